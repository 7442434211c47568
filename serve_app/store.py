"""JobStore: the service's memory, one SQLite file on the head node (WAL mode).

Jobs with their specs, status and idempotency keys, an append-only event log with per-job sequence numbers, the
latest checkpoint of each unfinished job (population + RNG state) and results. The coordinator is the only writer;
every write is committed before anyone is told about it, so nothing a client saw can disappear.

Opening it refuses, rather than hides, a loss (``serve_app.store_guard``): a damaged file, or a missing or empty
one where jobs were stored. The file and its folder are readable by this user only.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from client.models import ENDED, UNFINISHED
from engine import state_codec
from serve_app import backups
from serve_app.errors import disk_full_is_storage_full
from serve_app.private import private_dir, private_file
from serve_app.store_guard import StoreUnusable, check_integrity, mark_jobs_held, refuse_if_lost

SCHEMA_VERSION = 4  # PRAGMA user_version: 1 = before idempotency keys (stores from before versions were kept read 0),
# 2 = before the asked keys moved out of the checkpoint, 3 = before the evaluator version was stored at submission

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    evaluator_version TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    best TEXT
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    time REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id),
    generation INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluators (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    params TEXT NOT NULL,
    builtin INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cancel_requests (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id),
    requested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id),
    result TEXT NOT NULL
);
"""
# statements that bring a store from the previous version to this one, run in one transaction after a backup
UPGRADES = {
    2: ["""CREATE TABLE IF NOT EXISTS idempotency_keys (
        key TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        request TEXT NOT NULL  -- fingerprint of the validated request body
    )"""],
    # the genome keys of each generation a job evaluated (uint64 bytes), written once with that generation's
    # checkpoint: the search's memory of what it asked for is rebuilt from them, so the checkpoint stays small
    3: ["""CREATE TABLE IF NOT EXISTS asked_keys (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        generation INTEGER NOT NULL,
        keys BLOB NOT NULL,
        PRIMARY KEY (job_id, generation)
    )"""],
    # a job's spec keeps the evaluator its client asked for (a name, a version or none); the version it was pinned
    # to is stored beside it at submission. Older stores pinned it in the spec and filled this column only once
    # the job started
    4: ["UPDATE jobs SET evaluator_version = json_extract(spec, '$.evaluator') WHERE evaluator_version IS NULL"],
}


class JobStore:
    def __init__(self, path: str | Path):
        """Open the store, or raise ``StoreUnusable`` naming the file and the backup to restore."""
        self.path = Path(path)
        private_dir(self.path.parent)
        refuse_if_lost(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(private_file(self.path)), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        try:
            check_integrity(self.path, self._db)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if sys.platform == "darwin":  # macOS's fsync stops at the drive's cache; F_FULLFSYNC reaches the disk
                self._db.execute("PRAGMA fullfsync=ON")
                self._db.execute("PRAGMA checkpoint_fullfsync=ON")
            self._upgrade()
            self._marked = mark_jobs_held(self.path, self.count_jobs())
        except (sqlite3.DatabaseError, StoreUnusable) as exc:
            self._db.close()
            if isinstance(exc, StoreUnusable):
                raise
            raise StoreUnusable.damaged(self.path, str(exc)) from None
        for suffix in ("-wal", "-shm"):  # SQLite gives them the store's mode; older stores may have 0644 ones
            if (side := self.path.with_name(self.path.name + suffix)).exists():
                private_file(side)
        with self.transaction():
            for table in ("checkpoints", "asked_keys"):
                self._db.execute(f"DELETE FROM {table} WHERE job_id IN (SELECT id FROM jobs WHERE status IN (?, ?, ?))",
                                 ENDED)

    def _upgrade(self) -> None:
        """Create a new store at this version, or bring an older one up to it after a backup."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        fresh = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone() is None
        if version > SCHEMA_VERSION:
            raise StoreUnusable(f"the job store {self.path} was written by a newer version of the service (schema "
                                f"{version}, this one knows {SCHEMA_VERSION}); update this checkout")
        if fresh:
            self._db.executescript(SCHEMA)
            version = 1
        elif version == SCHEMA_VERSION:
            return
        else:
            try:
                backups.take(self.path, f"before-v{SCHEMA_VERSION}")
            except (OSError, backups.BackupFailed) as exc:
                raise StoreUnusable(f"the job store {self.path} needs an upgrade to schema {SCHEMA_VERSION}, and "
                                    f"the backup taken first failed, so it was left as it is: {exc}") from None
        with self.transaction():
            for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                for statement in UPGRADES[step]:
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def backup(self, keep: int) -> Path:
        """An online backup now (the service keeps writing meanwhile); keeps the newest ``keep``."""
        return backups.take(self.path, "scheduled", keep)

    @contextlib.contextmanager
    def transaction(self):
        """Group writes into one commit (one fsync): all of them land, or none. Inside another transaction, its
        writes join that one."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            with disk_full_is_storage_full(self.path):
                self._db.execute("BEGIN")
                try:
                    yield
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # a failed COMMIT (a full disk) leaves it open
                        self._db.execute("ROLLBACK")
                    raise

    def _write(self, sql: str, args: tuple = ()) -> None:
        with self._lock, disk_full_is_storage_full(self.path):
            self._db.execute(sql, args)

    # ---- service settings -----------------------------------------------------------------------------
    def put_setting(self, key: str, value: dict) -> None:
        self._write("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_setting(self, key: str) -> dict | None:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    # ---- evaluator versions ----------------------------------------------------------------------------
    def put_evaluator(self, version: str, name: str, source: str, params: str, builtin: bool) -> None:
        self._write("INSERT OR IGNORE INTO evaluators (version, name, source, params, builtin, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (version, name, source, params, int(builtin), time.time()))

    def get_evaluator(self, version: str) -> dict | None:
        row = self._db.execute("SELECT * FROM evaluators WHERE version = ?", (version,)).fetchone()
        return None if row is None else dict(row)

    def latest_evaluator(self, name: str) -> dict | None:
        row = self._db.execute("SELECT * FROM evaluators WHERE name = ? ORDER BY created_at DESC, rowid DESC "
                               "LIMIT 1", (name,)).fetchone()
        return None if row is None else dict(row)

    def list_evaluators(self) -> list[dict]:
        return [dict(r) for r in self._db.execute("SELECT * FROM evaluators ORDER BY name, created_at")]

    # ---- jobs --------------------------------------------------------------------------------------
    def create_job(self, spec: dict, progress: dict, key: tuple[str, str] | None = None, *,
                   evaluator_version: str) -> str:
        """Store a queued job with the evaluator version it is pinned to; ``key`` (idempotency key, request
        fingerprint) is stored with it, in one commit."""
        job_id = uuid.uuid4().hex[:12]
        with self.transaction():
            self._db.execute("INSERT INTO jobs (id, spec, status, created_at, progress, evaluator_version) "
                             "VALUES (?, ?, 'queued', ?, ?, ?)",
                             (job_id, json.dumps(spec), time.time(), json.dumps(progress), evaluator_version))
            if key is not None:
                self._db.execute("INSERT INTO idempotency_keys (key, job_id, request) VALUES (?, ?, ?)",
                                 (key[0], job_id, key[1]))
        if not self._marked:
            self._marked = mark_jobs_held(self.path, 1)
        return job_id

    def job_for_key(self, key: str) -> tuple[str, str] | None:
        """(job id, request fingerprint) stored under an idempotency key, or None."""
        row = self._db.execute("SELECT job_id, request FROM idempotency_keys WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row["job_id"], row["request"])

    def count_jobs(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()
        return count

    def set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        now = time.time()
        if status == "running":
            self._write("UPDATE jobs SET status = ?, started_at = COALESCE(started_at, ?) WHERE id = ?",
                        (status, now, job_id))
        elif status in ENDED:
            with self.transaction():  # an ended job's checkpoint is dead weight: its result (if any) is what counts
                self._db.execute("UPDATE jobs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                                 (status, now, error, job_id))
                self._db.execute("DELETE FROM checkpoints WHERE job_id = ?", (job_id,))
                self._db.execute("DELETE FROM asked_keys WHERE job_id = ?", (job_id,))
        else:
            self._write("UPDATE jobs SET status = ? WHERE id = ?", (status, job_id))

    def set_progress(self, job_id: str, progress: dict, best: dict | None = None) -> None:
        self._write("UPDATE jobs SET progress = ?, best = COALESCE(?, best) WHERE id = ?",
                    (json.dumps(progress), None if best is None else json.dumps(best), job_id))

    @staticmethod
    def _job(row: sqlite3.Row) -> dict[str, Any]:
        job = dict(row)
        job["spec"] = json.loads(job["spec"])
        job["progress"] = json.loads(job["progress"])
        job["best"] = json.loads(job["best"]) if job["best"] else None
        return job

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._job(row)

    def list_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [self._job(row) for row in rows]

    def unfinished_jobs(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM jobs WHERE status IN (?, ?, ?) ORDER BY created_at",
                                UNFINISHED).fetchall()
        return [self._job(row) for row in rows]

    def request_cancel(self, job_id: str) -> None:
        """Remember a cancel before it is acknowledged, so a crash cannot forget it."""
        self._write("INSERT OR IGNORE INTO cancel_requests (job_id, requested_at) VALUES (?, ?)",
                    (job_id, time.time()))

    def cancels_pending(self) -> set[str]:
        """Unfinished jobs whose cancel was acknowledged but not yet carried out."""
        rows = self._db.execute("SELECT c.job_id FROM cancel_requests c JOIN jobs j ON j.id = c.job_id "
                                "WHERE j.status IN (?, ?, ?)", UNFINISHED).fetchall()
        return {row["job_id"] for row in rows}

    def count_unfinished(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM jobs WHERE status IN (?, ?, ?)", UNFINISHED).fetchone()
        return count

    # ---- events ------------------------------------------------------------------------------------
    def append_event(self, job_id: str, type_: str, data: dict) -> dict[str, Any]:
        """Append one event with the next sequence number; returns it as stored."""
        with self._lock:
            (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id = ?",
                                       (job_id,)).fetchone()
            event = {"seq": last + 1, "job_id": job_id, "type": type_, "time": time.time(), "data": data}
            self._write("INSERT INTO events (job_id, seq, type, time, data) VALUES (?, ?, ?, ?, ?)",
                        (job_id, event["seq"], type_, event["time"], json.dumps(data)))
        return event

    def events_after(self, job_id: str, since: int, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT seq, type, time, data FROM events WHERE job_id = ? AND seq > ? "
                                "ORDER BY seq LIMIT ?", (job_id, since, limit)).fetchall()
        return [self._event(job_id, row) for row in rows]

    def last_progress_event(self, job_id: str) -> dict[str, Any] | None:
        """The job's last event that says how far it got (a pause and its resumption say nothing of that)."""
        row = self._db.execute("SELECT seq, type, time, data FROM events WHERE job_id = ? AND type NOT IN "
                               "('paused', 'resumed') ORDER BY seq DESC LIMIT 1", (job_id,)).fetchone()
        return None if row is None else self._event(job_id, row)

    @staticmethod
    def _event(job_id: str, row: sqlite3.Row) -> dict[str, Any]:
        return {"seq": row["seq"], "job_id": job_id, "type": row["type"], "time": row["time"],
                "data": json.loads(row["data"])}

    # ---- checkpoints and results --------------------------------------------------------------------
    def save_checkpoint(self, job_id: str, generation: int, state: dict, asked: Sequence[np.ndarray] = ()) -> None:
        """The job's state after ``generation`` generations; ``asked``: the keys of the generations told since the
        last checkpoint (the last ``len(asked)`` before ``generation``), kept apart (appended, never rewritten), so a
        checkpoint costs the same at generation 1 and 1,000."""
        with self.transaction():
            self._db.execute("INSERT INTO checkpoints (job_id, generation, state) VALUES (?, ?, ?) ON CONFLICT(job_id) "
                             "DO UPDATE SET generation = excluded.generation, state = excluded.state",
                             (job_id, generation, state_codec.pack(state)))
            first = generation - len(asked)
            self._db.executemany("INSERT OR REPLACE INTO asked_keys (job_id, generation, keys) VALUES (?, ?, ?)",
                                 [(job_id, first + k, np.ascontiguousarray(keys, dtype=np.uint64).tobytes())
                                  for k, keys in enumerate(asked)])

    def load_asked(self, job_id: str) -> list[np.ndarray]:
        """The keys of every generation the job's checkpoint has told, in order (see ``save_checkpoint``)."""
        rows = self._db.execute("SELECT keys FROM asked_keys WHERE job_id = ? AND generation < "
                                "(SELECT generation FROM checkpoints WHERE job_id = ?) ORDER BY generation",
                                (job_id, job_id)).fetchall()
        return [np.frombuffer(row["keys"], dtype=np.uint64) for row in rows]

    def load_checkpoint(self, job_id: str) -> dict | None:
        """The job's last checkpoint (``state_codec`` bytes; JSON text in a store written before them)."""
        row = self._db.execute("SELECT state FROM checkpoints WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        state = row["state"]
        return json.loads(state) if isinstance(state, str) else state_codec.unpack(state)

    def save_result(self, job_id: str, result: dict) -> None:
        self._write("INSERT OR REPLACE INTO results (job_id, result) VALUES (?, ?)", (job_id, json.dumps(result)))

    def get_result(self, job_id: str) -> dict | None:
        row = self._db.execute("SELECT result FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else json.loads(row["result"])
