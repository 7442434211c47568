"""`deploy/doctor.sh`: what stands between this laptop and a working two-laptop cluster, each problem with its fix.

    deploy/doctor.sh <head's Tailscale IP> [this laptop's Tailscale IP]     (on the head or a worker; runs this)

Run on a node (the head or a worker laptop). This laptop's side first: the macOS multi-node variable, the Ray token
that deploy/start-head.sh creates and deploy/join-worker.sh needs (~/.ray/auth_token, or $RAY_AUTH_TOKEN), the
head's Ray port, whether Ray runs here and under which address: one of this laptop's own, the one it reaches the
head from (what Ray picks when it is not told; a mismatch is the "This node has an IP address of 100.118.x, but we
cannot find a local Raylet with the same address" failure), and the one the head sees for it. Then the service, as
`miner doctor` sees it from here (client.doctor), and this laptop's Python, Ray and numba against the head's.

Prints one line per check (``ok`` or ``FAIL``, what was found, and for a failure its fix) and exits 0 when every
check passes, 3 when one fails (as `miner doctor` does). A check that fails skips the ones that depend on it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from client.doctor import MATCHED, Check, diagnose
from client.errors import MinerClientError
from client.settings import ConfigError, resolve
from schema.errors import ExitCode
from schema.version import PACKAGE
from serve_app.worker_daemon import RAY_PORT, head_reachable

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "config.yaml"
MAC_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class TokenRefused(Exception):
    """The head's Ray refused this laptop's Ray token."""


@dataclass(frozen=True)
class Raylet:
    node_id: str
    address: str  # its --node-ip-address: where the head sends this node's traffic


@dataclass(frozen=True)
class Here:
    """This laptop as the checks need it, gathered once (``Here.look``) so that the checks themselves are pure."""

    head: str  # the head's address, as given
    system: str  # platform.system(): Darwin, Linux
    environ: Mapping[str, str]
    home: Path
    addresses: tuple[str, ...]  # this laptop's own
    route: str | None  # the address this laptop reaches the head from; None: no route to it
    ray_port_open: bool  # the head's Ray (GCS) port answers
    raylet: Raylet | None  # Ray running on this laptop

    @classmethod
    def look(cls, head: str) -> Here:
        return cls(head, platform.system(), dict(os.environ), Path.home(), own_addresses(), route_to(head),
                   head_reachable(head), local_raylet())

    @property
    def on_head(self) -> bool:
        return self.head in self.addresses

    def restart(self) -> str:
        """The commands that (re)start Ray here under the address this laptop reaches the head from."""
        address = self.route or "<this laptop's Tailscale IP: tailscale ip -4>"
        if self.on_head:
            return f"deploy/stop-head.sh, then deploy/start-head.sh {address}"
        return (f"ray stop, then deploy/join-worker.sh --daemon {self.head} {address} (as a service: "
                f"MINER_IP={address} in ~/.config/strategy-miner/worker.env, or __THIS_IP__ in the launchd agent)")


def own_addresses() -> tuple[str, ...]:
    return tuple(sorted({address.address.split("%")[0] for addresses in psutil.net_if_addrs().values()
                         for address in addresses if address.family in (socket.AF_INET, socket.AF_INET6)}))


def route_to(head: str) -> str | None:
    """The source address of this laptop's packets to the head: what Ray uses for a node when not told otherwise
    (ray._raylet.node_ip_address_from_perspective does the same: connect a UDP socket, read its address)."""
    family = socket.AF_INET6 if ":" in head else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((head, RAY_PORT))  # UDP: nothing is sent
        except OSError:
            return None
        return probe.getsockname()[0]


def local_raylet() -> Raylet | None:
    """The raylet running on this laptop, from its command line (as Ray's own drivers find it)."""
    from ray._private.services import _find_address_from_flag, find_node_ids

    node_ids, addresses = find_node_ids(), _find_address_from_flag("--node_ip_address")
    if not node_ids or not addresses:
        return None
    return Raylet(min(node_ids), min(addresses))  # a laptop runs one raylet


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Ray's C++ client logs each refused or retried call on stderr; the check's own line says what matters."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def head_nodes(head: str) -> dict[str, tuple[str, bool]]:
    """Every node the head's Ray knows: node id -> (the address it sends to, alive)."""
    from ray._raylet import GcsClient
    from ray.core.generated.gcs_pb2 import GcsNodeInfo
    from ray.exceptions import AuthenticationError

    try:
        with _quiet_stderr():
            nodes = GcsClient(address=f"{head}:{RAY_PORT}").get_all_node_info(timeout=5)
    except AuthenticationError as exc:
        raise TokenRefused(str(exc)) from None
    return {node_id.hex(): (info.node_manager_address, info.state == GcsNodeInfo.ALIVE)
            for node_id, info in nodes.items()}


# ---- the checks on this laptop ------------------------------------------------------------------------------

def mac_variable(here: Here) -> Check:
    name = "macOS multi-node"
    if here.system != "Darwin":
        return Check(name, True, f"not needed on {here.system}")
    if here.environ.get(MAC_VARIABLE) != "1":
        return Check(name, False, f"{MAC_VARIABLE} is not 1 in this shell: Ray on macOS then refuses to join a "
                                  "cluster and gives nodes the address 127.0.0.1",
                     f"export {MAC_VARIABLE}=1 here and in ~/.zprofile (deploy/*.sh set it for themselves; "
                     "`ray` and `serve` commands typed by hand need it)")
    return Check(name, True, f"{MAC_VARIABLE}=1")


def ray_token(here: Here) -> Check:
    """The token deploy/join-worker.sh asks for (Ray's token authentication, RAY_AUTH_MODE=token)."""
    name = "Ray token"
    if here.environ.get("RAY_AUTH_TOKEN"):
        return Check(name, True, "$RAY_AUTH_TOKEN")
    path = here.home / ".ray" / "auth_token"
    if path.is_file() and path.read_text().strip():
        return Check(name, True, str(path))
    fix = ("deploy/start-head.sh creates it (ray get-auth-token --generate)" if here.on_head else
           f"copy the head's token here: scp {here.head}:.ray/auth_token ~/.ray/auth_token (deploy/start-head.sh "
           "created it on the head)")
    return Check(name, False, f"no Ray token: {path} is missing or empty and $RAY_AUTH_TOKEN is not set", fix)


def ray_port(here: Here) -> Check:
    name, head = f"head's Ray port {RAY_PORT}", here.head
    if not here.ray_port_open:
        return Check(name, False, f"nothing answers on {head}:{RAY_PORT}",
                     f"on the head: deploy/start-head.sh {head}; from here: is Tailscale up (tailscale ping {head})? "
                     "A firewall must let Ray's ports through")
    return Check(name, True, f"{head}:{RAY_PORT} answers")


def ray_here(here: Here) -> Check:
    name = "Ray on this laptop"
    if here.raylet is None:
        return Check(name, False, "no Ray running here", here.restart())
    return Check(name, True, f"node {here.raylet.node_id[:8]} as {here.raylet.address}")


def ray_address(name: str, address: str, here: Here) -> Check:
    """``address`` (Ray's here, or the one given) is this laptop's own and the one it reaches the head from."""
    if address not in here.addresses:
        return Check(name, False, f"{address} is not an address of this laptop (it has {', '.join(here.addresses)})",
                     "use the address the head reaches this laptop by: " + here.restart())
    if here.route is not None and address != here.route:
        return Check(name, False, f"this laptop reaches the head from {here.route}, not {address}: the head sends a "
                                  f"node at {address} its traffic on another way, and whatever here picks the address "
                                  f"itself gets {here.route} (\"This node has an IP address of {here.route}, but we "
                                  "cannot find a local Raylet with the same address\")", here.restart())
    return Check(name, True, f"{address}: this laptop's own, and the one it reaches the head from")


def in_cluster(here: Here, ask_head: Callable[[str], dict[str, tuple[str, bool]]]) -> list[Check]:
    """Ask the head's Ray about this laptop: is the token accepted, and is this node alive there, at its address?"""
    try:
        nodes = ask_head(here.head)
    except TokenRefused:
        return [Check("Ray token accepted", False, f"the head's Ray at {here.head}:{RAY_PORT} refused this laptop's "
                                                   "token",
                      "copy the head's ~/.ray/auth_token here again, then restart Ray here: " + here.restart())]
    except Exception as exc:  # a head starting or stopping answers oddly for a moment
        return [Check("Ray token accepted", False, f"could not ask the head's Ray: {exc}",
                      "retry in a few seconds; if it persists: ray status on the head")]
    checks = [Check("Ray token accepted", True, f"the head's Ray lists {len(nodes)} nodes")]
    if here.raylet is None:
        return checks
    name, node = "seen by the head", here.raylet
    address, alive = nodes.get(node.node_id, (None, False))
    if not alive:
        checks.append(Check(name, False, f"the head does not count this laptop's Ray (node {node.node_id[:8]}) as "
                                         "alive: it was dropped (sleep, network loss, head restart)",
                            "deploy/join-worker.sh --daemon rejoins by itself; by hand: " + here.restart()))
    elif address != node.address:
        checks.append(Check(name, False, f"the head sends to {address}, Ray here runs as {node.address}",
                            here.restart()))
    else:
        checks.append(Check(name, True, f"node {node.node_id[:8]} alive at {address}"))
    return checks


def node_checks(here: Here, given: str | None = None,
                ask_head: Callable[[str], dict[str, tuple[str, bool]]] = head_nodes) -> list[Check]:
    """This laptop's side; ``given``: an address to check besides the one Ray runs under here (if it runs)."""
    checks = [mac_variable(here), ray_token(here), ray_port(here), ray_here(here)]
    addresses = {here.raylet.address: "Ray address"} if here.raylet else {}
    if given:
        addresses.setdefault(given, "given address")
    checks.extend(ray_address(name, address, here) for address, name in addresses.items())
    if checks[1].ok and checks[2].ok:  # the token and the port: without them Ray cannot be asked
        checks.extend(in_cluster(here, ask_head))
    return checks


# ---- the service, and this laptop's versions against the head's ------------------------------------------------

def versions(local: Mapping[str, str], head: Mapping[str, str]) -> Check:
    """Python, Ray, numba and the engine code here against the head's (the package itself is diagnose's "client
    version")."""
    keys = [key for key in MATCHED if key != PACKAGE]
    differ = [f"{key} {local.get(key, '?')} (head {head.get(key, '?')})" for key in keys
              if local.get(key) != head.get(key)]
    if differ:
        return Check("versions", False, "this laptop runs " + ", ".join(differ),
                     "install the head's versions here (same Python, then pip install -e \".[server]\" from the "
                     "head's commit), then restart Ray here")
    return Check("versions", True, ", ".join(f"{key} {local.get(key, '?')}" for key in keys) + ", as the head")


def service_checks(url: str) -> list[Check]:
    """`miner doctor`'s checks from here, then this laptop's versions against the head's."""
    try:
        token = resolve(url=url).token
    except ConfigError as exc:  # the service's reachability and clock are still worth knowing
        missing = Check("token accepted", False, str(exc), "copy the head's ~/.miner/token to ~/.miner/token here "
                                                           "(or set MINER_TOKEN)")
        return [missing if check.name == "token accepted" else check for check in diagnose(url, "")]
    checks = diagnose(url, token)
    if any(check.name == "token accepted" and check.ok for check in checks):
        from client import MinerClient
        from serve_app.versions import runtime_versions

        try:
            with MinerClient(url, token, timeout_s=10) as client:
                head = client.cluster().versions
        except MinerClientError as exc:
            checks.append(Check("versions", False, f"could not read the head's versions: {exc}",
                                "retry; if it persists, look at the service log on the head"))
        else:
            checks.append(versions(runtime_versions(), head))
    return checks


def report(checks: list[Check]) -> int:
    for check in checks:
        fix = f"  -> fix: {check.fix}" if not check.ok and check.fix else ""
        print(f"{'ok' if check.ok else 'FAIL':<4}  {check.name:<26}  {check.detail}{fix}")
    return ExitCode.OK if all(check.ok for check in checks) else ExitCode.SERVICE  # as `miner doctor`


def service_port() -> int:
    """The service's HTTP port, from the config deploy/start-head.sh deploys."""
    return int(yaml.safe_load(CONFIG.read_text())["http_options"]["port"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/doctor.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("head", help="the head laptop's address (Tailscale IP)")
    parser.add_argument("ip", nargs="?", help="this laptop's address as given to join-worker.sh or start-head.sh, "
                                              "checked besides the one Ray runs under here (say, before joining)")
    args = parser.parse_args(argv)
    os.environ["RAY_AUTH_MODE"] = "token"  # as deploy/*.sh set it: the cluster's Ray wants the token
    print(f"deploy/doctor.sh: this laptop against the head {args.head}")
    checks = node_checks(Here.look(args.head), args.ip)
    return report(checks + service_checks(f"http://{args.head}:{service_port()}"))


if __name__ == "__main__":
    sys.exit(main())
