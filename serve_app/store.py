"""JobStore: the service's memory, one SQLite file on the head node (WAL mode).

Jobs with their specs and status, an append-only event log with per-job sequence numbers, the latest
checkpoint of each job (population + RNG state) and results. The coordinator is the only writer;
every write is committed before anyone is told about it, so nothing a client saw can disappear.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

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


class JobStore:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self):
        """Group writes into one commit (one fsync): all of them land, or none."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write(self, sql: str, args: tuple = ()) -> None:
        with self._lock:
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
    def create_job(self, spec: dict, progress: dict) -> str:
        job_id = uuid.uuid4().hex[:12]
        self._write("INSERT INTO jobs (id, spec, status, created_at, progress) VALUES (?, ?, 'queued', ?, ?)",
                    (job_id, json.dumps(spec), time.time(), json.dumps(progress)))
        return job_id

    def set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        now = time.time()
        if status == "running":
            self._write("UPDATE jobs SET status = ?, started_at = COALESCE(started_at, ?) WHERE id = ?",
                        (status, now, job_id))
        elif status in ("finished", "failed", "cancelled"):
            self._write("UPDATE jobs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                        (status, now, error, job_id))
        else:
            self._write("UPDATE jobs SET status = ? WHERE id = ?", (status, job_id))

    def set_progress(self, job_id: str, progress: dict, best: dict | None = None,
                     evaluator_version: str | None = None) -> None:
        self._write("UPDATE jobs SET progress = ?, best = COALESCE(?, best), "
                    "evaluator_version = COALESCE(?, evaluator_version) WHERE id = ?",
                    (json.dumps(progress), None if best is None else json.dumps(best), evaluator_version, job_id))

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
        rows = self._db.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running') "
                                "ORDER BY created_at").fetchall()
        return [self._job(row) for row in rows]

    def request_cancel(self, job_id: str) -> None:
        """Remember a cancel before it is acknowledged, so a crash cannot forget it."""
        self._write("INSERT OR IGNORE INTO cancel_requests (job_id, requested_at) VALUES (?, ?)",
                    (job_id, time.time()))

    def cancels_pending(self) -> set[str]:
        """Unfinished jobs whose cancel was acknowledged but not yet carried out."""
        rows = self._db.execute("SELECT c.job_id FROM cancel_requests c JOIN jobs j ON j.id = c.job_id "
                                "WHERE j.status IN ('queued', 'running')").fetchall()
        return {row["job_id"] for row in rows}

    def count_unfinished(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()
        return count

    # ---- events ------------------------------------------------------------------------------------
    def append_event(self, job_id: str, type_: str, data: dict) -> dict[str, Any]:
        """Append one event with the next sequence number; returns it as stored."""
        with self._lock:
            (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id = ?",
                                       (job_id,)).fetchone()
            event = {"seq": last + 1, "job_id": job_id, "type": type_, "time": time.time(), "data": data}
            self._db.execute("INSERT INTO events (job_id, seq, type, time, data) VALUES (?, ?, ?, ?, ?)",
                             (job_id, event["seq"], type_, event["time"], json.dumps(data)))
        return event

    def events_after(self, job_id: str, since: int, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT seq, type, time, data FROM events WHERE job_id = ? AND seq > ? "
                                "ORDER BY seq LIMIT ?", (job_id, since, limit)).fetchall()
        return [self._event(job_id, row) for row in rows]

    def last_event(self, job_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT seq, type, time, data FROM events WHERE job_id = ? ORDER BY seq DESC LIMIT 1",
                               (job_id,)).fetchone()
        return None if row is None else self._event(job_id, row)

    @staticmethod
    def _event(job_id: str, row: sqlite3.Row) -> dict[str, Any]:
        return {"seq": row["seq"], "job_id": job_id, "type": row["type"], "time": row["time"],
                "data": json.loads(row["data"])}

    # ---- checkpoints and results --------------------------------------------------------------------
    def save_checkpoint(self, job_id: str, generation: int, state: dict) -> None:
        self._write("INSERT INTO checkpoints (job_id, generation, state) VALUES (?, ?, ?) "
                    "ON CONFLICT(job_id) DO UPDATE SET generation = excluded.generation, state = excluded.state",
                    (job_id, generation, json.dumps(state)))

    def load_checkpoint(self, job_id: str) -> dict | None:
        row = self._db.execute("SELECT state FROM checkpoints WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else json.loads(row["state"])

    def save_result(self, job_id: str, result: dict) -> None:
        self._write("INSERT OR REPLACE INTO results (job_id, result) VALUES (?, ?)", (job_id, json.dumps(result)))

    def get_result(self, job_id: str) -> dict | None:
        row = self._db.execute("SELECT result FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else json.loads(row["result"])
