"""Domain errors raised by the coordinator and mapped to HTTP answers in one place (``api.py``).

Each names its row of ``schema.errors.ERRORS`` (code, HTTP status, WebSocket close code). Ray re-raises an actor's
exception in the caller as a subclass of the original class, so the ingress can catch these by type after
``await coordinator.method.remote(...)``.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3

from schema.errors import ERRORS, ErrorKind


def shown(name: str, limit: int = 100) -> str:
    """A name from a request, as an error repeats it: cut short, so a megabyte of id is not echoed back whole."""
    return name if len(name) <= limit else f"{name[:limit]}... ({len(name):,} characters)"


class MinerError(Exception):
    kind: ErrorKind = ERRORS["bad_request"]

    def __init__(self, message: str):
        message = message.encode("utf-8", "backslashreplace").decode()  # a lone surrogate echoed from a request
        super().__init__(message)                                        # could not cross Ray: the actor died
        self.message = message


class NotFound(MinerError):
    kind = ERRORS["not_found"]


class Conflict(MinerError):
    kind = ERRORS["conflict"]


class InvalidData(MinerError):
    kind = ERRORS["invalid_data"]


class TooLarge(MinerError):
    kind = ERRORS["too_large"]


class TooMany(MinerError):
    kind = ERRORS["too_many"]


class Unavailable(MinerError):
    kind = ERRORS["unavailable"]


class StorageFull(MinerError):
    """The disk under the job store (or the upload folder) is full: nothing was stored, nothing already stored is
    lost; running jobs pause and resume by themselves once writes succeed again."""

    kind = ERRORS["storage_full"]

    @classmethod
    def at(cls, where) -> StorageFull:
        return cls(f"the disk holding {where} is full: nothing was stored and nothing stored before is lost; "
                   "running jobs are paused and resume by themselves once space is freed")


class CannotStart(MinerError):
    """The coordinator's constructor failed (e.g. a damaged or lost job store): Ray does not restart it, so retrying
    cannot help until the cause named in the message is fixed."""

    kind = ERRORS["cannot_start"]


@contextlib.contextmanager
def disk_full_is_storage_full(where: str):
    """SQLite's SQLITE_FULL or the system's ENOSPC (or EDQUOT) inside the block becomes ``StorageFull`` naming
    ``where``."""
    try:
        yield
    except (sqlite3.OperationalError, OSError) as exc:
        full = (exc.sqlite_errorcode == sqlite3.SQLITE_FULL if isinstance(exc, sqlite3.OperationalError)
                else exc.errno in (errno.ENOSPC, errno.EDQUOT))  # no room, or none left to this user
        if not full:
            raise
        raise StorageFull.at(where) from None
