"""The worker daemon (deploy/join-worker.sh --daemon) and the service files that run it. Its rejoining after a cut
link and after a head restart is proven on two real laptops in test_two_laptops.py; here: its decisions, the
systemd unit and launchd agent as their managers read them, and the daemon started by the unit's own ExecStart
with no head to reach (waits, says so, stops cleanly on SIGTERM)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from serve_app.worker_daemon import Daemon, Observation, decide
from tests.deploy import hosts
from tests.deploy.units import UNIT, exec_start, plist_arguments, unit_settings


@pytest.mark.parametrize(("seen", "not_member_before", "action"), [
    (Observation(False, None, None), False, "wait"),          # head unreachable, no Ray here: wait, don't start
    (Observation(False, "n1", None), True, "wait"),           # head unreachable: a short outage heals by itself
    (Observation(True, None, None), False, "join"),           # Ray here died (or never ran)
    (Observation(True, "n1", True), False, "stay"),           # joined
    (Observation(True, "n1", None), True, "stay"),            # the head did not answer: no news, no restart
    (Observation(True, "n1", False), False, "stay"),          # not (yet) counted alive once: could be registering
    (Observation(True, "n1", False), True, "join"),           # dropped by the head (slept, or the head restarted)
])
def test_the_daemon_rejoins_only_when_the_head_is_reachable_and_does_not_count_this_node(seen, not_member_before,
                                                                                        action):
    assert decide(seen, not_member_before) == action


def test_the_daemon_writes_one_word_for_what_it_sees_and_rejoins_on_the_second_sighting_of_a_drop(tmp_path,
                                                                                                   monkeypatch):
    daemon = Daemon("10.0.0.1", "10.0.0.2", "air", 1, tmp_path, interval_s=0.01)
    seen = iter([Observation(False, None, None), Observation(True, "n1", True), Observation(True, "n1", False),
                 Observation(True, "n1", False)])
    monkeypatch.setattr(daemon, "observe", lambda: next(seen))
    joins = []
    monkeypatch.setattr(daemon, "join", lambda: joins.append(daemon.status))
    statuses = []
    for _ in range(4):
        daemon.step()
        statuses.append((tmp_path / "worker.status").read_text())
    assert statuses == ["waiting\n", "joined\n", "joined\n", "joining\n"]
    assert joins == ["joining"]  # once, and the status said so before the join began


def test_the_launchd_agent_runs_the_same_command_as_the_systemd_unit():
    home, head, ip = "/Users/someone", "100.64.0.1", "100.64.0.2"
    env_file = f"MINER_HEAD={head}\nMINER_IP={ip}\n"
    assert exec_start(home, env_file) == plist_arguments(home, head, ip) == [
        f"{home}/strategy-miner/deploy/join-worker.sh", "--daemon", head, ip, "air"]
    assert exec_start(home, env_file + "MINER_CPUS=4\n")[-1] == "4"
    assert set(unit_settings()) >= {"ExecStart", "EnvironmentFile", "KillMode", "TimeoutStopSec"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "strategy-miner").symlink_to(hosts.REPO)  # where the README installs the checkout
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    done = subprocess.run(["systemd-analyze", "--user", "verify", str(UNIT)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    # verify exits 0 on mere warnings (an unknown key, say): any output at all is a finding
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_the_unit_s_command_waits_for_an_unreachable_head_and_stops_cleanly_on_sigterm(tmp_path):
    with hosts.Network(tmp_path) as net:
        air = net.laptop("air")
        air.home("strategy-miner").symlink_to(hosts.REPO)
        (air.home(".ray")).mkdir()
        air.home(".ray/auth_token").write_text("copied-from-the-head\n")
        head = f"{net.prefix}.99"  # nobody there
        argv = exec_start(hosts.HOME, f"MINER_HEAD={head}\nMINER_IP={air.ip}\nMINER_CPUS=1\n")
        daemon = air.spawn("exec " + shlex.join(argv), "daemon.out")
        status = air.home(".miner/worker.status")
        deadline = time.monotonic() + 60
        while not (status.exists() and status.read_text().strip() == "waiting"):
            assert daemon.poll() is None, air.home("daemon.out").read_text()
            assert time.monotonic() < deadline, air.home("daemon.out").read_text()
            time.sleep(0.2)
        assert f"head {head}:6379 unreachable" in air.home(".miner/worker.log").read_text()
        assert air.processes("raylet") == []  # it never starts Ray while the head is away

        (pid,) = air.processes("serve_app.worker_daemon")
        sent = time.monotonic()
        os.kill(pid, signal.SIGTERM)  # what systemd and launchd send on stop
        assert daemon.wait(timeout=30) == 0
        assert time.monotonic() - sent < 20
        assert status.read_text().strip() == "stopped"
        out = air.home("daemon.out").read_text()
        assert "Traceback" not in out and "SIGTERM received" not in out, out
