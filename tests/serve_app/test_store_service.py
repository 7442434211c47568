"""The job store as the service uses it: a coordinator started on a damaged or lost store refuses to start (and is
not restarted in a loop) with the file and the backup named, which the ingress passes on; the running service backs
its store up on schedule and keeps the newest; its files are this user's alone."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
import uuid

import pytest
import ray
from ray.exceptions import RayActorError
from ray.util.state import list_actors

from serve_app import backups
from serve_app.api import start_failure
from serve_app.config import NAMESPACE, ON_HEAD_NODE, ServiceSettings
from serve_app.coordinator import MinerCoordinator
from serve_app.store import JobStore


def spoil(db, how: str) -> None:
    if how == "truncated":
        with open(db, "r+b") as f:
            f.truncate(db.stat().st_size // 2)
    elif how == "corrupted":
        with open(db, "r+b") as f:
            f.seek(db.stat().st_size // 2)
            f.write(os.urandom(8192))
    else:
        db.unlink()


@pytest.mark.parametrize("how", ["truncated", "corrupted", "deleted"])
def test_a_coordinator_on_a_damaged_store_refuses_to_start_naming_the_file_and_the_backup(service, tmp_path, how):
    db = tmp_path / "miner.db"
    store = JobStore(db)
    for seed in range(40):
        with store.transaction():
            job = store.create_job({"dataset": "x" * 300, "seed": seed}, {}, evaluator_version="balanced@1")
            for k in range(10):
                store.append_event(job, "e", {"pad": "y" * 300, "k": k})
    backup = store.backup(keep=2)
    store.close()
    spoil(db, how)
    settings = ServiceSettings(token="t", store_path=str(db), upload_dir=str(tmp_path / "uploads"))
    name = f"coordinator-on-a-{how}-store-{uuid.uuid4().hex[:6]}"
    coordinator = MinerCoordinator.options(name=name, namespace=NAMESPACE, resources=ON_HEAD_NODE).remote(
        settings.model_dump())
    with pytest.raises(RayActorError) as died:
        ray.get(coordinator.__ray_ready__.remote(), timeout=120)
    reason = start_failure(died.value)  # what the ingress answers (503 cannot_start) and fails a deploy with
    assert reason is not None and reason.startswith("the service cannot start: ")
    assert f"the job store {db} is {'missing' if how == 'deleted' else 'damaged'}" in reason
    assert str(backup) in reason and f"python -m serve_app.backups restore {db}" in reason
    (state,) = list_actors(address=service.cluster.address, filters=[("name", "=", name)], detail=True)
    assert (state.state, state.num_restarts) == ("DEAD", 0)  # Ray does not restart an actor whose constructor raised
    if how == "corrupted":
        print(f"\n{reason}")


def test_the_service_backs_its_store_up_on_schedule_keeping_the_newest(service, client):
    store = service.state_dir / "miner.db"
    seen: set = set()
    started = time.time()
    with service.deployed(backups={"interval_h": 1 / 3600, "keep": 2}):  # one a second, live (user_config)
        deadline = time.monotonic() + 90
        while len(seen) < 4:
            assert time.monotonic() < deadline, f"backups seen: {sorted(p.name for p in seen)}"
            kept = backups.existing(store)
            assert len(kept) <= 2
            seen |= {p for p in kept if backups.taken_at(p) >= started}
            time.sleep(0.5)
    newest = backups.newest(store)
    with sqlite3.connect(f"file:{newest}?mode=ro", uri=True) as copy:
        assert backups.quick_check(copy) == []
        in_backup = {row[0] for row in copy.execute("SELECT id FROM jobs")}
    assert in_backup <= {job.id for job in client.jobs(limit=1000)}


def test_the_service_s_state_files_are_this_user_s_alone(service, client):
    client.submit(dataset="synthetic", population=8, generations=1, permutations=0, seed=77)  # the marker exists
    state = service.state_dir
    for path in [state, *state.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        elif path.parent != state / "uploads":  # uploads lie in their 0700 folder
            assert mode == 0o600, (path, oct(mode))
    assert {"miner.db", "miner.db-wal", "miner.db.has-jobs", "backups"} <= {p.name for p in state.iterdir()}
