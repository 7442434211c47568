"""Domain errors raised by the coordinator and mapped to HTTP answers in one place (``api.py``).

Each names its row of ``schema.errors.ERRORS`` (code, HTTP status, WebSocket close code). Ray re-raises an actor's
exception in the caller as a subclass of the original class, so the ingress can catch these by type after
``await coordinator.method.remote(...)``.
"""

from __future__ import annotations

from schema.errors import ERRORS, ErrorKind


class MinerError(Exception):
    kind: ErrorKind = ERRORS["bad_request"]

    def __init__(self, message: str):
        super().__init__(message)
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


class CannotStart(MinerError):
    """The coordinator's constructor failed (e.g. a damaged or lost job store): Ray does not restart it, so retrying
    cannot help until the cause named in the message is fixed."""

    kind = ERRORS["cannot_start"]
