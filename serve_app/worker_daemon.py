"""Keep this laptop in the miner's Ray cluster: rejoin by itself after sleep, network loss or a head restart.

    deploy/join-worker.sh --daemon <head-ip> <this-ip> [label] [cpus]     (runs this module)

Every few seconds it looks at two things: is the head's Ray port reachable, and is this laptop's raylet running
and counted alive by the head? Ray leaves a laptop that slept past its health checks, or whose head restarted, out
of the cluster for good: the head marks the node dead, and the raylet exits once it hears so, or lingers as a member
of a cluster that no longer exists. Whenever the head is reachable and this node is not an alive member, the daemon
clears what is left of Ray here (`ray stop --force`: the node is already dead to the head, nothing runs on it) and
joins again with deploy/join-worker.sh. While the head is unreachable it only waits: a short outage heals by itself.

It writes one word to ``<state-dir>/worker.status`` (``joining``, ``joined``, ``waiting``: head unreachable or a
failed join being retried, ``stopped``: the daemon ended) and a line per change to ``<state-dir>/worker.log``.
SIGTERM (a service manager's stop) leaves the cluster with a polite ``ray stop`` and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path

JOIN_SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "join-worker.sh"
RAY_PORT = 6379  # deploy/start-head.sh starts the head's Ray on it

log = logging.getLogger("miner.worker")


@dataclass
class Observation:
    head_reachable: bool
    node_id: str | None  # this laptop's raylet, if one runs
    member: bool | None  # the head counts that node alive; None: could not ask


def decide(seen: Observation, not_member_before: bool) -> str:
    """What to do about one observation: ``join``, ``wait`` or ``stay``.

    A node the head does not count alive must be seen so twice in a row before it is restarted: a node that has
    just started may be asked about before its registration is visible.
    """
    if not seen.head_reachable:
        return "wait"
    if seen.node_id is None:
        return "join"
    if seen.member is False and not_member_before:
        return "join"
    return "stay"


def head_reachable(head: str, port: int = RAY_PORT, timeout_s: float = 2.0) -> bool:
    try:
        with socket.create_connection((head, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def local_node_id() -> str | None:
    """The node id of the raylet running on this machine, if any."""
    import psutil

    for process in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if process.info["name"] == "raylet" and process.status() != psutil.STATUS_ZOMBIE:
                for arg in process.info["cmdline"] or []:
                    if arg.startswith("--node_id="):
                        return arg.split("=", 1)[1]
    return None


def is_alive_member(head: str, node_id: str, port: int = RAY_PORT) -> bool | None:
    """Whether the head's GCS counts ``node_id`` alive; None if the GCS could not be asked."""
    try:
        from ray._raylet import GcsClient
        from ray.core.generated.gcs_pb2 import GcsNodeInfo

        nodes = GcsClient(address=f"{head}:{port}").get_all_node_info(timeout=5)
    except Exception as exc:  # a head starting or stopping answers oddly for a moment: ask again next round
        log.debug("could not ask the head about this node: %s", exc)
        return None
    return any(node_id_.hex() == node_id and info.state == GcsNodeInfo.ALIVE for node_id_, info in nodes.items())


class Daemon:
    def __init__(self, head: str, ip: str, label: str, cpus: int, state_dir: Path, interval_s: float,
                 join_script: Path = JOIN_SCRIPT):
        self.head, self.ip, self.label, self.cpus = head, ip, label, cpus
        self.join_script = join_script
        self.interval_s = interval_s
        self.status_file = state_dir / "worker.status"
        self.status: str | None = None
        self._not_member = False
        state_dir.mkdir(parents=True, exist_ok=True)

    def set_status(self, status: str, why: str) -> None:
        if status != self.status:
            log.info("%s: %s", status, why)
            staged = self.status_file.with_suffix(".tmp")
            staged.write_text(status + "\n")
            staged.replace(self.status_file)  # readers never see a half-written word
            self.status = status

    def observe(self) -> Observation:
        if not head_reachable(self.head):
            return Observation(False, local_node_id(), None)
        node_id = local_node_id()
        return Observation(True, node_id, is_alive_member(self.head, node_id) if node_id else None)

    def step(self) -> None:
        seen = self.observe()
        action = decide(seen, self._not_member)
        self._not_member = seen.member is False
        if action == "wait":
            self.set_status("waiting", f"head {self.head}:{RAY_PORT} unreachable")
        elif action == "stay":
            if seen.member:  # None (the head did not answer in time): no news, the status stands
                self.set_status("joined", f"node {seen.node_id} is in the cluster of {self.head}")
        else:
            why = "no Ray running here" if seen.node_id is None else f"the head dropped node {seen.node_id}"
            self.set_status("joining", why)
            self.join()

    def join(self) -> None:
        self._ray_stop(force=True)  # leftovers of a dropped node would make `ray start` refuse to run
        done = subprocess.run([str(self.join_script), self.head, self.ip, self.label, str(self.cpus)],
                              capture_output=True, text=True)
        for line in (done.stdout + done.stderr).splitlines()[-20:]:
            log.debug("join-worker.sh: %s", line)
        self._not_member = False
        if done.returncode == 0:
            self.set_status("joined", f"joined {self.head} as '{self.label}' with {self.cpus} CPUs")
        else:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            self.set_status("waiting", f"join-worker.sh failed ({done.returncode}): {tail}; retrying")
            time.sleep(self.interval_s * 3)  # a join that fails (wrong token, say) is not retried in a tight loop

    def _ray_stop(self, force: bool) -> None:
        command = ["ray", "stop", "--force"] if force else ["ray", "stop", "--grace-period", "10"]
        subprocess.run(command, capture_output=True, text=True)

    def run(self) -> int:
        from serve_app.stop import stop_on_signals

        stop_on_signals()
        log.info("keeping this laptop (%s, '%s', %d CPUs) in the cluster of %s", self.ip, self.label, self.cpus,
                 self.head)
        try:
            while True:
                try:
                    self.step()
                except Exception:  # a daemon that dies of one odd answer leaves the laptop out: log, look again
                    log.exception("check failed; looking again in %.0f s", self.interval_s)
                time.sleep(self.interval_s)
        except KeyboardInterrupt:  # SIGTERM, SIGHUP or Ctrl-C (serve_app.stop.Stop)
            log.info("stopping: leaving the cluster")
            self._ray_stop(force=False)
            self.set_status("stopped", "daemon stopped")
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.worker_daemon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("head", help="the head laptop's address (Tailscale IP)")
    parser.add_argument("ip", help="this laptop's address, as the head reaches it")
    parser.add_argument("label", nargs="?", default="air", help="custom resource naming this node (default: air)")
    parser.add_argument("cpus", nargs="?", type=int, default=os.cpu_count(), help="CPUs to offer (default: all)")
    parser.add_argument("--state-dir", default="~/.miner", help="where worker.status and worker.log go")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between checks (default: 3)")
    parser.add_argument("--join-script", type=Path, default=JOIN_SCRIPT, help="joins once (deploy/join-worker.sh)")
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir).expanduser()
    state_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=[RotatingFileHandler(state_dir / "worker.log", maxBytes=1_000_000, backupCount=2),
                                  logging.StreamHandler(sys.stdout)])
    for noisy in ("ray", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return Daemon(args.head, args.ip, args.label, args.cpus, state_dir, args.interval, args.join_script).run()


if __name__ == "__main__":
    sys.exit(main())
