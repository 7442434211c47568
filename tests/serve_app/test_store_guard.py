"""A damaged or lost job store is refused with the file and the backup named, never silently replaced; backups are
taken online and restore an equal store; the store's files are this user's alone. No Ray: a real SQLite file."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat

import pytest

from serve_app import backups
from serve_app.store import SCHEMA_VERSION, JobStore
from serve_app.store_guard import StoreUnusable, marker


def filled_store(path, jobs: int = 30) -> list[str]:
    """A store with jobs, events, checkpoints and a result, big enough (~250 kB) that damage in its middle hits
    the tables; closed afterwards (its WAL folded into the file)."""
    store = JobStore(path)
    ids = []
    for i in range(jobs):
        job = store.create_job({"dataset": "x" * 400, "seed": i}, {"generation": 0}, key=(f"key-{i}", f"req-{i}"),
                               evaluator_version="balanced@1")
        with store.transaction():  # one commit: the fill is quick even with synchronous=FULL
            for k in range(20):
                store.append_event(job, "batch_evaluated", {"k": k, "pad": "y" * 200})
        store.save_checkpoint(job, 1, {"generation": 1})
        ids.append(job)
    store.save_result(ids[0], {"fitness": 1.5})
    store.set_status(ids[0], "finished")
    store.close()
    return ids


def dump(path) -> list[str]:
    """Every table's rows, as SQL: two stores are equal when their dumps are."""
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def test_a_truncated_store_is_refused_naming_the_file_and_the_backup(tmp_path):
    db = tmp_path / "miner.db"
    filled_store(db)
    backup = backups.take(db, "scheduled")
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2)  # a copy cut short, a disk that lost the file's tail
    with pytest.raises(StoreUnusable) as refused:
        JobStore(db)
    message = str(refused.value)
    assert f"the job store {db} is damaged" in message
    assert str(backup) in message and f"python -m serve_app.backups restore {db}" in message


@pytest.mark.parametrize("where", ["middle", "header"])
def test_a_corrupted_store_is_refused_naming_the_file(tmp_path, where):
    db = tmp_path / "miner.db"
    filled_store(db)
    with open(db, "r+b") as f:
        f.seek(0 if where == "header" else db.stat().st_size // 2)
        f.write(os.urandom(8192))  # garbage over two pages
    with pytest.raises(StoreUnusable) as refused:
        JobStore(db)
    assert f"the job store {db} is damaged" in str(refused.value)
    assert f"no backup of it in {tmp_path / 'backups'}" in str(refused.value)


@pytest.mark.parametrize("loss", ["deleted", "emptied", "replaced by a new store"])
def test_a_lost_store_that_held_jobs_is_refused_not_started_afresh(tmp_path, loss):
    db = tmp_path / "miner.db"
    filled_store(db)
    assert marker(db).exists()
    for side in (db, db.with_name("miner.db-wal"), db.with_name("miner.db-shm")):
        side.unlink(missing_ok=True)
    if loss == "emptied":
        db.write_bytes(b"")
    elif loss == "replaced by a new store":
        marker(db).rename(tmp_path / "aside")
        JobStore(db).close()  # a fresh store, no job
        (tmp_path / "aside").rename(marker(db))
    state = {"deleted": "is missing", "emptied": "is empty", "replaced by a new store": "holds no jobs"}[loss]
    with pytest.raises(StoreUnusable) as refused:
        JobStore(db)
    assert f"the job store {db} {state}" in str(refused.value) and f"delete {marker(db)}" in str(refused.value)
    assert not db.exists() or db.stat().st_size == 0 or loss == "replaced by a new store"  # nothing created


def test_a_store_that_never_held_a_job_starts_empty_and_is_marked_with_its_first(tmp_path):
    db = tmp_path / "miner.db"
    store = JobStore(db)
    assert not marker(db).exists()
    store.create_job({"dataset": "x"}, {}, evaluator_version="balanced@1")
    assert marker(db).exists() and "refuses to start" in marker(db).read_text()


def test_a_backup_restores_an_equal_store(tmp_path):
    db = tmp_path / "miner.db"
    filled_store(db)
    live = JobStore(db)  # open, as the service holds it: the backup is taken online
    backup = live.backup(keep=3)
    live.close()
    before = dump(db)
    assert backup.parent == tmp_path / "backups" and dump(backup) == before
    with open(db, "r+b") as f:
        f.seek(db.stat().st_size // 2)
        f.write(os.urandom(8192))
    assert backups.main(["restore", str(db)]) == 0
    assert dump(db) == before
    restored = JobStore(db)
    assert restored.count_jobs() == 30 and restored.job_for_key("key-3") is not None
    assert list(tmp_path.glob("miner.db.replaced-*"))  # the damaged file is kept aside, not overwritten


def test_only_the_newest_backups_are_kept_and_a_damaged_copy_never_replaces_them(tmp_path):
    db = tmp_path / "miner.db"
    filled_store(db)
    taken = [backups.take(db, "scheduled", keep=2) for _ in range(4)]
    assert backups.existing(db) == taken[-2:]
    with open(db, "r+b") as f:
        f.seek(db.stat().st_size // 2)
        f.write(os.urandom(8192))
    with pytest.raises(backups.BackupFailed, match="check failed"):
        backups.take(db, "scheduled", keep=2)
    assert backups.existing(db) == taken[-2:] and not list((tmp_path / "backups").glob("*.partial"))


def test_a_missing_store_is_not_backed_up_as_an_empty_one(tmp_path):
    db = tmp_path / "miner.db"
    filled_store(db)
    good = backups.take(db, "scheduled")
    db.unlink()  # lost: the newest backup must stay the one to restore
    with pytest.raises(backups.BackupFailed, match=f"no store at {db} to back up"):
        backups.take(db, "manual")
    assert not db.exists() and backups.newest(db) == good


def test_copies_left_by_a_killed_backup_are_removed_by_the_next_once_abandoned(tmp_path):
    db = tmp_path / "miner.db"
    filled_store(db)
    backups.take(db, "scheduled")
    killed = "miner-20261204T010203000000Z-scheduled.db.partial"
    left = [tmp_path / "backups" / f"{killed}{end}" for end in ("", "-journal")]
    in_progress = tmp_path / "backups" / "miner-20261204T050505000000Z-manual.db.partial"  # another process's, now
    for copy in [*left, in_progress]:
        copy.write_bytes(bytes(4096))
    for copy in left:
        os.utime(copy, (0, 0))
    backups.take(db, "scheduled")
    assert not any(copy.exists() for copy in left) and in_progress.exists()


def test_an_older_store_is_backed_up_before_its_upgrade_and_keeps_its_jobs(tmp_path):
    db = tmp_path / "miner.db"
    ids = filled_store(db)
    with sqlite3.connect(db) as old:  # as the previous version left it: no keys table, no schema version
        old.execute("DROP TABLE idempotency_keys")
        old.execute("PRAGMA user_version = 0")
    before = dump(db)
    store = JobStore(db)
    (backup,) = backups.existing(db)
    assert backup.name.endswith(f"-before-v{SCHEMA_VERSION}.db") and dump(backup) == before
    assert store.count_jobs() == len(ids) and store.job_for_key("anything") is None
    assert store.get_result(ids[0]) == {"fitness": 1.5}


def test_a_version_3_store_s_pinned_evaluators_move_out_of_the_spec_into_their_column(tmp_path):
    db = tmp_path / "miner.db"
    store = JobStore(db)
    queued = store.create_job({"dataset": "x", "evaluator": "balanced@0123abcd"}, {}, evaluator_version="balanced@1")
    started = store.create_job({"dataset": "x", "evaluator": "most_trades"}, {}, evaluator_version="most_trades@4567")
    store.close()
    with sqlite3.connect(db) as old:  # as version 3 left a job not yet started: the version in its spec only
        old.execute("UPDATE jobs SET evaluator_version = NULL WHERE id = ?", (queued,))
        old.execute("PRAGMA user_version = 3")
    again = JobStore(db)
    assert again.get_job(queued)["evaluator_version"] == "balanced@0123abcd"
    assert again.get_job(started)["evaluator_version"] == "most_trades@4567"


def test_checkpoints_of_ended_jobs_are_deleted(tmp_path):
    db = tmp_path / "miner.db"
    ids = filled_store(db)  # ids[0] finished, the rest queued with checkpoints
    store = JobStore(db)
    assert store.load_checkpoint(ids[0]) is None and store.load_checkpoint(ids[1]) is not None
    store.set_status(ids[1], "cancelled")
    store.set_status(ids[2], "failed", error="x")
    assert store.load_checkpoint(ids[1]) is None and store.load_checkpoint(ids[2]) is None
    assert store.load_checkpoint(ids[3]) is not None
    with sqlite3.connect(db) as raw:  # one left behind (a crash between the status and the delete)
        raw.execute("INSERT INTO checkpoints (job_id, generation, state) VALUES (?, 1, '{}')", (ids[0],))
        raw.execute("INSERT INTO asked_keys (job_id, generation, keys) VALUES (?, 0, x'00')", (ids[0],))
    store.close()
    again = JobStore(db)
    assert again.load_checkpoint(ids[0]) is None  # cleared when the store opens
    assert not sqlite3.connect(db).execute("SELECT 1 FROM asked_keys WHERE job_id = ?", (ids[0],)).fetchall()


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_folder_is_0700_and_the_store_and_its_backups_0600(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)  # as `mkdir -p ~/.miner` left it
    state.chmod(0o755)
    old = state / "miner.db"
    shutil.copy(_old_store(tmp_path), old)
    old.chmod(0o644)  # a store from before modes were set
    store = JobStore(old)
    store.create_job({"dataset": "x"}, {}, evaluator_version="balanced@1")
    store.backup(keep=2)
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"miner.db", "miner.db-wal", "miner.db-shm", "miner.db.has-jobs"}
    assert mode(state) == 0o700 and mode(state / "backups") == 0o700
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    fresh = tmp_path / "fresh" / "deeper" / "miner.db"
    JobStore(fresh).create_job({"dataset": "x"}, {}, evaluator_version="balanced@1")
    assert mode(fresh.parent) == 0o700 and mode(fresh) == 0o600


def _old_store(tmp_path):
    path = tmp_path / "made-earlier.db"
    JobStore(path).close()
    return path
