"""Services stop the way service managers stop them: SIGTERM to `python -m serve_app.local --keep-running` and
deploy/stop-head.sh end cleanly within seconds (exit 0, no abort, no Ray stack dump, nothing lost).

Each service runs inside its own laptop (network, mount and PID namespace, tests/deploy/hosts.py): its own Ray,
its own ports, and `ray stop` there touches no other cluster on this machine. The client is this test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from client import MinerClient
from serve_app.store import JobStore
from tests.deploy import hosts
from tests.serve_app.jobs import assert_same_result, in_process

pytestmark = pytest.mark.slow

# what a clean stop must not print: Ray's SIGTERM handler dumps a stack and aborts; Serve's shutdown logs a
# failed retry of its controller's last task
NOISE = ("Traceback", "SIGTERM received", "Aborted", "core dumped", "*** ", "graceful_shutdown failed", "(raylet)")
JOB = {"dataset": "BTC-USD_FIVE_MINUTE", "population": 160, "generations": 12, "seed": 3, "risk": "LOW",
       "permutations": 0}


@pytest.fixture
def laptop(tmp_path):
    net = hosts.Network(tmp_path)
    try:
        yield net.laptop("local")
    finally:
        net.close()


def start_local(laptop: hosts.Laptop, run: int) -> tuple[subprocess.Popen, int]:
    """README command 1 with --keep-running (a tiny demo job), on the laptop's own address; its host PID."""
    process = laptop.spawn(f"exec python -m serve_app.local --data-dir data --keep-running --host {laptop.ip} "
                           f"--population 8 --generations 1 > ~/out{run}.log 2> ~/err{run}.log", f"nsenter{run}.log")
    deadline = time.monotonic() + 240
    while "Ctrl-C to stop" not in read(laptop, f"out{run}.log"):
        assert process.poll() is None, f"serve_app.local ended early: {read(laptop, f'err{run}.log')[-3000:]}"
        assert time.monotonic() < deadline, f"no service after 240 s: {read(laptop, f'err{run}.log')[-3000:]}"
        time.sleep(0.5)
    (pid,) = [p for p in laptop.processes("serve_app.local") if "nsenter" not in cmdline(p) and "bash" not in
              cmdline(p)]
    return process, pid


def read(laptop: hosts.Laptop, name: str) -> str:
    path = laptop.home(name)
    return path.read_text(errors="replace") if path.exists() else ""


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def sigterm(laptop: hosts.Laptop, process: subprocess.Popen, pid: int, run: int) -> float:
    """SIGTERM, as systemd or launchd would send it; the seconds until a clean exit 0."""
    sent = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    rc = process.wait(timeout=60)
    took = time.monotonic() - sent
    out, err = read(laptop, f"out{run}.log"), read(laptop, f"err{run}.log")
    shown = f"\n--- stdout\n{out[-2000:]}\n--- stderr\n{err[-3000:]}"
    assert rc == 0, f"exit {rc} after SIGTERM{shown}"
    assert not [n for n in NOISE if n in out + err], f"noisy stop:{shown}"
    assert "service stopped" in out
    assert took < 20, f"took {took:.1f} s to stop"
    assert laptop.processes("raylet") == [] and laptop.processes("gcs_server") == [], "Ray outlived the service"
    return took


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_stops_the_local_service_cleanly_and_a_running_job_resumes_on_the_next_start(laptop):
    expected = in_process(JOB["dataset"], str(hosts.REPO / "data" / "BTC-USD_FIVE_MINUTE.csv.gz"),
                          **{k: v for k, v in JOB.items() if k != "dataset"})
    process, pid = start_local(laptop, 1)
    token = read(laptop, ".miner/token").strip()
    assert (laptop.home(".miner/token").stat().st_mode & 0o777) == 0o600
    with MinerClient(f"http://{laptop.ip}:8000", token) as client:
        job = client.submit(**JOB)
        for event in client.events(job.id):
            if event.type == "generation_best" and event.data.generation >= 1:
                break
    mining_stop = sigterm(laptop, process, pid, 1)  # mid-job, with a follower just gone

    store = JobStore(laptop.home(".miner/miner.db"))
    try:
        mined = store.get_job(job.id)
        assert mined["status"] == "running", mined["status"]  # unfinished, not failed: it resumes on the next start
        assert store.load_checkpoint(job.id) is not None
        demo = [j for j in store.list_jobs() if j["id"] != job.id]
        assert [j["status"] for j in demo] == ["finished"] and store.get_result(demo[0]["id"])
    finally:
        store.close()

    process, pid = start_local(laptop, 2)  # same state folder: the job resumes and ends as it would have
    with MinerClient(f"http://{laptop.ip}:8000", token) as client:
        assert client.wait(job.id).status == "finished"
        assert_same_result(client.result(job.id), expected)
    idle_stop = sigterm(laptop, process, pid, 2)
    print(f"SIGTERM to a clean exit: {mining_stop:.1f} s mid-job, {idle_stop:.1f} s idle")


def test_stop_head_with_nothing_running_says_so_and_exits_0(laptop):
    done = laptop.run("deploy/stop-head.sh", timeout=120)
    assert "nothing to stop" in done.stdout and "Traceback" not in done.stderr
