"""Online backups of the job store, taken with SQLite's backup API while the service runs.

A backup is a consistent copy of the store at one moment (WAL readers do not block the writer, so the service keeps
writing meanwhile), made beside the store in ``backups/`` as ``<store>-<UTC time>-<reason>.db``, one self-contained
file readable by this user only. A copy is kept only if ``PRAGMA quick_check`` passes on it, so damage in the live
file never pushes the last good backup out; the newest ``keep`` are kept.

    python -m serve_app.backups list ~/.miner/miner.db
    python -m serve_app.backups take ~/.miner/miner.db
    python -m serve_app.backups restore ~/.miner/miner.db [--backup FILE]   # with the service stopped
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from serve_app.private import private_dir, private_file

STAMP = "%Y%m%dT%H%M%S%fZ"
ABANDONED_S = 3600.0  # a copy not written to for this long was left by a killed backup


class BackupFailed(Exception):
    """The copy did not pass its check; the previous backups are untouched."""


def folder(store: Path) -> Path:
    return store.parent / "backups"


def _stamp() -> str:
    return datetime.now(UTC).strftime(STAMP)


def existing(store: Path) -> list[Path]:
    """This store's backups, oldest first (their names sort by the time they were taken)."""
    pattern = re.compile(rf"{re.escape(store.stem)}-\d{{8}}T\d{{12}}Z-[a-z0-9-]+\.db")
    found = folder(store).glob(f"{store.stem}-*.db") if folder(store).is_dir() else []
    return sorted(p for p in found if pattern.fullmatch(p.name))


def newest(store: Path) -> Path | None:
    found = existing(store)
    return found[-1] if found else None


def taken_at(backup: Path) -> float:
    """When the backup was taken (seconds since the epoch), read from its name."""
    stamp = re.search(r"\d{8}T\d{12}Z", backup.name).group()
    return datetime.strptime(stamp, STAMP).replace(tzinfo=UTC).timestamp()


def quick_check(db: sqlite3.Connection, limit: int = 5) -> list[str]:
    """SQLite's structural check of every page (seconds per GB); [] when the file is sound."""
    problems = [row[0] for row in db.execute(f"PRAGMA quick_check({int(limit)})")]
    return [] if problems == ["ok"] else problems


def _copy(source: Path, target: Path) -> list[str]:
    """Copy ``source`` into the (new, empty) ``target`` with the backup API; the copy's quick_check problems."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        return quick_check(dst)
    finally:
        dst.close()
        src.close()


def _remove_abandoned_copies(store: Path) -> None:
    """Remove copies a killed backup left (``.partial``, with its journal): untouched for ABANDONED_S, so not one
    that another process is writing now."""
    if not folder(store).is_dir():
        return
    for stale in folder(store).glob(f"{store.stem}-*.db.partial*"):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - stale.stat().st_mtime > ABANDONED_S:
                stale.unlink()


def take(store: Path, reason: str, keep: int | None = None) -> Path:
    """Back the store up now; with ``keep``, delete all but the newest ``keep`` backups afterwards."""
    if not store.is_file():  # connecting would make an empty store, whose copy would be the newest backup
        raise BackupFailed(f"no store at {store} to back up")
    _remove_abandoned_copies(store)
    target = private_dir(folder(store)) / f"{store.stem}-{_stamp()}-{reason}.db"
    staged = target.with_name(target.name + ".partial")
    staged.unlink(missing_ok=True)
    private_file(staged)
    try:
        problems = _copy(store, staged)
    except sqlite3.Error as exc:
        problems = [str(exc)]
    if problems:
        staged.unlink(missing_ok=True)
        raise BackupFailed(f"backup of {store} not kept, its check failed: {'; '.join(problems)}")
    os.replace(staged, target)  # a half-written copy never carries a backup's name
    if keep is not None:
        for old in existing(store)[:-keep]:
            old.unlink(missing_ok=True)
    return target


def restore(store: Path, backup: Path | None = None) -> Path:
    """Put ``backup`` (default: the newest) in place of the store; the service must be stopped.

    The file it replaces, with its -wal and -shm, is kept beside it as ``<store>.replaced-<time>`` for inspection.
    Returns the backup restored.
    """
    backup = backup or newest(store)
    if backup is None or not backup.is_file():
        raise FileNotFoundError(f"no backup to restore in {folder(store)}")
    with contextlib.closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as check:
        if problems := quick_check(check):
            raise BackupFailed(f"{backup} fails its check too: {'; '.join(problems)}; try an older one")
    stamp = _stamp()
    for suffix in ("", "-wal", "-shm"):
        current = store.with_name(store.name + suffix)
        if current.exists():
            current.rename(store.with_name(f"{store.name}.replaced-{stamp}{suffix}"))
    if problems := _copy(backup, private_file(store)):
        raise BackupFailed(f"restoring {backup} to {store} failed its check: {'; '.join(problems)}")
    return backup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.backups", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("list", "take", "restore"))
    parser.add_argument("store", type=Path, help="the job store, e.g. ~/.miner/miner.db")
    parser.add_argument("--backup", type=Path, help="restore this backup instead of the newest")
    args = parser.parse_args(argv)
    store = args.store.expanduser()
    try:
        if args.action == "list":
            for backup in existing(store):
                print(f"{backup}  {backup.stat().st_size / 1e6:.1f} MB")
        elif args.action == "take":
            print(take(store, "manual"))
        else:
            print(f"restored {restore(store, args.backup and args.backup.expanduser())} to {store}")
    except (OSError, sqlite3.Error, BackupFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
