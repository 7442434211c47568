"""Refuse, rather than hide, a lost or damaged job store.

SQLite opens a missing or zero-length file as a new, empty store (every job and result gone without a word) and
reads a damaged one until a request trips on the bad page. So the store is checked as it opens: ``PRAGMA
quick_check`` over every page, and a marker beside it (``<store>.has-jobs``, written once the first job is stored)
that turns a missing or emptied store into a refusal instead of a fresh start. Every refusal names the file and the
backup to restore (``serve_app.backups``).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from serve_app import backups
from serve_app.private import write_private


class StoreUnusable(Exception):
    """The job store cannot be opened without losing or hiding jobs; the message says which file and what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))  # one line (SQLite's reports have several): logs and 503s show it

    @classmethod
    def damaged(cls, store: Path, problem: str) -> StoreUnusable:
        return cls(f"the job store {store} is damaged ({problem[:300]}); {remedy(store, damaged=True)}")


def marker(store: Path) -> Path:
    return store.with_name(store.name + ".has-jobs")


def remedy(store: Path, damaged: bool = False) -> str:
    backup = backups.newest(store)
    if backup is None and damaged:
        return (f"there is no backup of it in {backups.folder(store)}: move it aside to start with an empty store (its "
                "jobs are lost), or try to salvage it with the sqlite3 shell's .recover")
    if backup is None:
        return f"there is no backup of it in {backups.folder(store)} to restore"
    taken = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(backups.taken_at(backup)))
    return (f"stop the service and restore the newest backup, {backup} (taken {taken}), with "
            f"`python -m serve_app.backups restore {store}`")


def refuse_if_lost(store: Path) -> None:
    """Before SQLite creates a new file: a missing or zero-length store that held jobs is refused."""
    if not marker(store).exists() or (store.exists() and store.stat().st_size > 0):
        return
    state = "missing" if not store.exists() else "empty (0 bytes)"
    raise StoreUnusable(f"the job store {store} is {state}, but jobs were stored in it ({marker(store)} says so); "
                        f"{remedy(store)}; or, to start with an empty store on purpose, delete {marker(store)}")


def check_integrity(store: Path, db: sqlite3.Connection) -> None:
    if problems := backups.quick_check(db):
        raise StoreUnusable.damaged(store, "; ".join(problems))


def mark_jobs_held(store: Path, jobs: int) -> bool:
    """Whether the marker is in place, writing it if the store holds jobs. A marked store that holds no job was
    replaced or emptied behind the service's back, and is refused."""
    if marker(store).exists():
        if jobs == 0:
            raise StoreUnusable(f"the job store {store} holds no jobs, but jobs were stored in it ({marker(store)} "
                                f"says so); {remedy(store)}; or, to start with an empty store on purpose, delete "
                                f"{marker(store)}")
        return True
    if jobs:
        write_private(marker(store), f"{store.name} has held jobs since {time.strftime('%Y-%m-%d %H:%M:%S %z')}. "
                                     "While this file exists, the service refuses to start on a missing or empty "
                                     "store instead of starting afresh. Restore a backup with `python -m "
                                     f"serve_app.backups restore {store}`, or delete this file to start with an "
                                     "empty store on purpose.\n")
    return bool(jobs)
