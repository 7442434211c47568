"""Pretend laptops on one Linux machine: each is its own network, mount and PID namespace with its own address on
a bridge, its own HOME and its own /tmp, so `ray stop` on one touches nothing else (no other laptop, no Ray
cluster of the test session or of anyone else on the machine).

    with Network() as net:
        head = net.laptop("head")                      # 10.x.y.2
        head.run("deploy/start-head.sh 10.x.y.2 2")    # the README's command, inside the laptop
        net.cut(head); net.restore(head)               # `ip link set <veth> down` / up on the host side

Each laptop's namespaces are held by a small init (PID 1 inside, it reaps orphans such as Ray's daemons);
killing it makes the kernel kill everything else in that PID namespace, and the network namespace and its veth
pair disappear with the last process. Needs root, `unshare`, `nsenter` and `ip`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
HOME = "/home/laptop"  # every laptop's HOME, inside its own mount namespace

# PID 1 of a laptop. The mounts come first: HOME is the host folder bound onto a fresh /home (so the test can
# read the laptop's files and keep its logs after a failure), then /tmp and /dev/shm become private tmpfs (Ray's
# session folders and object store). The checkout ($2) is bound back at its own path afterwards: a CI clone may
# live under /tmp, which the private tmpfs would hide. bash as PID 1 reaps orphans; without that, `ray stop` would
# wait on zombies.
INIT = """set -euo pipefail
mount -t tmpfs tmpfs /home
mkdir -p {home} /home/.checkout
mount --bind "$1" {home}
mount --bind "$2" /home/.checkout
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
mkdir -p "$2"
mount --bind /home/.checkout "$2"
ip link set lo up
trap 'exit 0' TERM
while true; do sleep 3600 & wait $! || true; done
"""


def available() -> str | None:
    """None if laptops can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network, mount and PID namespaces)"
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)}"
    return None


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started it dies (Linux PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Laptop:
    def __init__(self, name: str, ip: str, veth: str, folder: Path):
        self.name, self.ip, self.veth, self.folder = name, ip, veth, folder
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "init.log", "w") as log:
            # --kill-child: the laptop dies with its unshare, and unshare with this process (_die_with_parent), so
            # not even a test runner killed outright leaves laptops behind
            self._holder = subprocess.Popen(
                ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
                 "--kill-child=SIGKILL", "bash", "-c", INIT.format(home=HOME), "init", str(self.folder), str(REPO)],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, preexec_fn=_die_with_parent)
        self.pid = self._init_pid()
        self._wait_for_mounts()

    def _init_pid(self, timeout_s: float = 10) -> int:
        """The laptop's PID 1, as the host sees it: unshare's only child."""
        deadline = time.monotonic() + timeout_s
        children = Path(f"/proc/{self._holder.pid}/task/{self._holder.pid}/children")
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if pids := children.read_text().split():
                    return int(pids[0])
            if self._holder.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"laptop {self.name} did not start: {(self.folder / 'init.log').read_text()}")

    def _wait_for_mounts(self, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while self.run("mountpoint -q /dev/shm", check=False).returncode != 0:
            if time.monotonic() > deadline or self._holder.poll() is not None:
                raise RuntimeError(f"laptop {self.name} has no private mounts: "
                                   f"{(self.folder / 'init.log').read_text()}")
            time.sleep(0.05)

    # ---- running things inside ---------------------------------------------------------------------------------
    def _argv(self, command: str, env: dict[str, str] | None) -> list[str]:
        environment = {"PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       "HOME": HOME, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", **(env or {})}
        return ["nsenter", "--target", str(self.pid), "--net", "--mount", "--pid", f"--wd={REPO}", "--",
                "env", "-i", *(f"{k}={v}" for k, v in environment.items()), "bash", "-c", command]

    def run(self, command: str, *, env: dict[str, str] | None = None, timeout: float = 300,
            check: bool = True) -> subprocess.CompletedProcess:
        """A bash command inside this laptop (cwd: the repo, HOME: its own), to the end."""
        done = subprocess.run(self._argv(command, env), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"on {self.name}: `{command}` exited {done.returncode}\n"
                                 f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}")
        return done

    def spawn(self, command: str, log: str, *, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A long-running bash command inside this laptop; its output goes to ``folder/log``."""
        with open(self.folder / log, "ab") as out:
            return subprocess.Popen(self._argv(command, env), stdout=out, stderr=subprocess.STDOUT)

    def home(self, relative: str = "") -> Path:
        """A path under this laptop's HOME, as the host sees it."""
        return self.folder / relative

    def processes(self, needle: str) -> list[int]:
        """Host PIDs of this laptop's processes whose command line contains ``needle``."""
        mine = os.readlink(f"/proc/{self.pid}/ns/pid")
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") == mine and \
                        needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
        return found

    def cpu_seconds(self, needle: str) -> float:
        """CPU time (user + system) used so far by this laptop's processes matching ``needle``."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.processes(needle):
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total

    def close(self) -> None:
        """Kill the laptop: its PID 1 first, so the kernel takes every process in it along."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._holder.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._holder.wait(timeout=10)


class Network:
    """A bridge on the host with a /24 of its own; laptops get .2, .3, ...; the host itself is .1."""

    def __init__(self, folder: Path | None = None):
        problem = available()
        if problem is not None:  # CI runs as root with these tools: a machine without them fails, never skips
            raise RuntimeError(f"cannot build pretend laptops here: {problem}")
        self.tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
        self.bridge = f"mnb{self.tag}"  # at most 15 characters, unique per test run
        self.prefix = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
        self.host_ip = f"{self.prefix}.1"
        self.folder = folder or Path(tempfile.mkdtemp(prefix="laptops-"))
        self.laptops: list[Laptop] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except Exception:
            self.close()
            raise

    def laptop(self, name: str) -> Laptop:
        ip = f"{self.prefix}.{len(self.laptops) + 2}"
        veth = f"mnv{self.tag}{len(self.laptops)}"
        laptop = Laptop(name, ip, veth, self.folder / name)
        self.laptops.append(laptop)
        # the host end stays here, on the bridge; the other end becomes the laptop's eth0
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(laptop.pid))
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        laptop.run(f"ip addr add {ip}/24 dev eth0 && ip link set eth0 up")
        return laptop

    def cut(self, laptop: Laptop) -> None:
        """The laptop drops off the network (Wi-Fi gone, lid closed): nothing reaches it and nothing leaves it."""
        _ip("link", "set", laptop.veth, "down")

    def restore(self, laptop: Laptop) -> None:
        _ip("link", "set", laptop.veth, "up")

    def close(self) -> None:
        for laptop in self.laptops:
            laptop.close()
        for laptop in self.laptops:  # normally gone with its namespace; not if the laptop never started
            subprocess.run(["ip", "link", "del", laptop.veth], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
