"""A full disk under the job store: 503 storage_full (the one error model), the running job `paused` (an event for
its followers), resumed by itself once space is freed and ending with the result of an undisturbed run; no staged
upload left behind; the service answers throughout.

The service is README command 1 (`serve_app.local --keep-running`) inside its own laptop (tests/deploy/hosts.py),
whose state folder (~/.miner: the job store, uploads, the token) is a 64 MB tmpfs mounted inside that laptop:
a disk that really fills up, without touching this machine's.
"""

from __future__ import annotations

import time

import pytest

from client import MinerClient
from client.errors import ServiceError
from serve_app.job_lifecycle import PAUSE_PROBE_S
from tests.deploy import hosts
from tests.deploy.test_clean_stop import JOB, sigterm, start_local
from tests.serve_app.jobs import assert_same_result, in_process

pytestmark = pytest.mark.slow

SIZE_MB = 64
GENERATIONS = 16


@pytest.fixture
def laptop(tmp_path):
    net = hosts.Network(tmp_path)
    try:
        laptop = net.laptop("local")
        laptop.run(f"mkdir -p ~/.miner && mount -t tmpfs -o size={SIZE_MB}m,mode=0700 tmpfs ~/.miner")
        yield laptop
    finally:
        net.close()


def fill(laptop: hosts.Laptop, name: str, *, against_probes: bool = False) -> None:
    """Write zeros until the disk is full (dd stops at ENOSPC).

    ``against_probes``: keep it full while a paused job probes it. Every PAUSE_PROBE_S the job writes its reserve
    and deletes what it wrote when that fails, so a probe racing dd hands its blocks back afterwards. A second dd,
    a probe period later, takes those too; from then on every probe starts on a full disk and has nothing to give."""
    for part in [name, f"{name}.rest"] if against_probes else [name]:
        done = laptop.run(f"dd if=/dev/zero of=~/.miner/{part} bs=4k; sync", check=False)
        assert "No space left on device" in done.stderr, done.stderr
        if against_probes:
            time.sleep(2.5 * PAUSE_PROBE_S)


def wait_for(what, predicate, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s:.0f} s"
        time.sleep(0.5)
    return value


@pytest.mark.timeout(900)
def test_a_full_disk_pauses_the_job_answers_503_and_the_job_resumes_to_the_undisturbed_result(laptop, tmp_path):
    spec = {**JOB, "generations": GENERATIONS}
    expected = in_process(spec["dataset"], str(hosts.REPO / "data" / "BTC-USD_FIVE_MINUTE.csv.gz"),
                          **{k: v for k, v in spec.items() if k != "dataset"})
    process, pid = start_local(laptop, 1)
    token = laptop.run("cat ~/.miner/token").stdout.strip()
    with MinerClient(f"http://{laptop.ip}:8000", token) as client:
        job = client.submit(**spec)
        for event in client.events(job.id):
            if event.type == "generation_best" and event.data.generation >= 1:
                break
        fill(laptop, "filler")
        wait_for("the job pausing", lambda: client.job(job.id).status == "paused")
        # whatever filled the disk also takes the room the pause was stored in
        fill(laptop, "filler2", against_probes=True)

        started = time.monotonic()
        assert len(client.jobs()) == 2  # reads work: the store is full, not broken
        assert time.monotonic() - started < 2.0
        with pytest.raises(ServiceError) as refused:
            client.submit(**{**spec, "seed": 99})
        assert (refused.value.status, refused.value.code) == (503, "storage_full")
        assert "is full" in refused.value.message
        csv = tmp_path / "up.csv"
        csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(
            f"{1_700_000_000 + 300 * i},1,2,0.5,1.5,10\n" for i in range(5_000)))
        with pytest.raises(ServiceError) as refused:
            client.upload_dataset(csv, "during_the_full_disk")
        assert (refused.value.status, refused.value.code) == (503, "storage_full")
        leftovers = laptop.run("ls -A ~/.miner/uploads 2>/dev/null || true").stdout.split()
        assert not [name for name in leftovers if "staged" in name or "during_the_full_disk" in name], leftovers
        assert client.job(job.id).status == "paused"  # still waiting, not failed

        laptop.run("rm ~/.miner/filler*")
        assert client.wait(job.id).status == "finished"
        assert_same_result(client.result(job.id), expected)
        types = [event.type for event in client.events(job.id)]
        assert types.count("paused") == 1 and types.count("resumed") == 1
        assert types.index("paused") < types.index("resumed") < types.index("finished")
        assert client.submit(**{**spec, "seed": 99, "generations": 1}).status == "queued"  # writes work again
    sigterm(laptop, process, pid, 1)
