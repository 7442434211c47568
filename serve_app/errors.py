"""Domain errors raised by the coordinator and mapped to HTTP answers in one place (``api.py``).

Ray re-raises an actor's exception in the caller as a subclass of the original class, so the ingress
can catch these by type after ``await coordinator.method.remote(...)``.
"""

from __future__ import annotations


class MinerError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(MinerError):
    status = 404
    code = "not_found"


class Conflict(MinerError):
    status = 409
    code = "conflict"


class InvalidData(MinerError):
    status = 422
    code = "invalid_data"


class TooLarge(MinerError):
    status = 413
    code = "too_large"


class TooMany(MinerError):
    status = 429
    code = "too_many"


class Unavailable(MinerError):
    status = 503
    code = "unavailable"


class CannotStart(MinerError):
    """The coordinator's constructor failed (e.g. a damaged or lost job store): Ray does not restart it, so retrying
    cannot help until the cause named in the message is fixed."""

    status = 503
    code = "cannot_start"
