"""JobStore on its own: no Ray, a real SQLite file."""

import numpy as np
import pytest

from serve_app.errors import StorageFull
from serve_app.store import JobStore


def test_jobs_events_checkpoints_results_survive_a_reopen(tmp_path):
    path = tmp_path / "miner.db"
    store = JobStore(path)
    job_id = store.create_job({"dataset": "x"}, {"generation": 0}, evaluator_version="v@1")
    assert store.get_job(job_id)["status"] == "queued"
    assert [store.append_event(job_id, "e", {"i": i})["seq"] for i in range(3)] == [1, 2, 3]
    store.save_checkpoint(job_id, 1, {"generation": 1})
    store.save_checkpoint(job_id, 2, {"generation": 2})
    store.set_status(job_id, "running")
    store.set_progress(job_id, {"generation": 2}, best={"fitness": 1.5})
    store.save_result(job_id, {"fitness": 1.5})
    store.set_status(job_id, "finished")
    store.put_setting("runtime", {"pool": {}})
    running = store.create_job({"dataset": "y"}, {}, key=("client-key", "fingerprint"),
                               evaluator_version="balanced@1")
    store.save_checkpoint(running, 1, {"generation": 1}, asked=[np.arange(1, dtype=np.uint64)])
    store.save_checkpoint(running, 3, {"generation": 3},  # two generations told since the last checkpoint
                          asked=[np.arange(2, dtype=np.uint64), np.arange(3, dtype=np.uint64)])
    store.save_checkpoint(job_id, 3, {"generation": 3}, asked=[np.ones(4, np.uint64)])  # then it ended
    store.set_status(job_id, "finished")
    store.close()

    again = JobStore(path)
    job = again.get_job(job_id)
    assert (job["status"], job["progress"], job["best"], job["evaluator_version"]) == (
        "finished", {"generation": 2}, {"fitness": 1.5}, "v@1")
    assert job["started_at"] <= job["finished_at"]
    assert [e["data"]["i"] for e in again.events_after(job_id, 1)] == [1, 2]
    assert again.append_event(job_id, "e", {})["seq"] == 4  # numbering continues after a restart
    assert again.load_checkpoint(job_id) is None  # an ended job's checkpoint is gone: its result is what counts
    assert again.load_checkpoint(running) == {"generation": 3}
    assert [keys.tolist() for keys in again.load_asked(running)] == [[0], [0, 1], [0, 1, 2]]  # appended, in order
    assert again.load_asked(job_id) == []  # deleted with the ended job's checkpoint
    assert again.job_for_key("client-key") == (running, "fingerprint") and again.job_for_key("other") is None
    assert again.get_result(job_id) == {"fitness": 1.5}
    assert again.get_setting("runtime") == {"pool": {}}
    assert [j["id"] for j in again.unfinished_jobs()] == [running]


def test_sequences_are_per_job_and_unfinished_jobs_are_found(tmp_path):
    store = JobStore(tmp_path / "m.db")
    a, b = (store.create_job({}, {}, evaluator_version="balanced@1") for _ in range(2))
    store.append_event(a, "x", {})
    assert store.append_event(b, "x", {})["seq"] == 1
    store.set_status(b, "running")
    assert {j["id"] for j in store.unfinished_jobs()} == {a, b} and store.count_unfinished() == 2
    store.append_event(a, "y", {"generation": 3})
    store.append_event(a, "paused", {"reason": "full"})
    store.append_event(a, "resumed", {})
    told = store.last_progress_event(a)  # a pause says nothing of how far the job got
    assert told["seq"] == 2 and told["data"] == {"generation": 3}
    store.set_status(b, "paused")
    assert {j["id"] for j in store.unfinished_jobs()} == {a, b} and store.count_unfinished() == 2
    store.set_status(a, "finished")
    assert store.count_unfinished() == 1 and store.last_progress_event("nope") is None
    store.request_cancel(a)
    store.request_cancel(b)
    assert store.cancels_pending() == {b}  # a has finished: nothing left to carry out
    assert store.get_job("nope") is None and store.get_result(a) is None


def test_a_full_disk_is_storage_full_and_rolls_back_whole(tmp_path):
    """SQLite's SQLITE_FULL, forced here with max_page_count: nothing of the transaction lands, reads go on."""
    store = JobStore(tmp_path / "m.db")
    job = store.create_job({}, {}, evaluator_version="balanced@1")
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageFull, match="is full: nothing was stored"), store.transaction():
        store.set_status(job, "running")
        store.append_event(job, "e", {"pad": "x" * 100_000})
    assert store.get_job(job)["status"] == "queued" and store.last_progress_event(job) is None
    with pytest.raises(StorageFull):
        store.append_event(job, "e", {"pad": "x" * 100_000})
