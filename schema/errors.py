"""The one error model and the one table of error codes: each code's HTTP status, WebSocket close code and the
`miner` CLI's exit code. The service answers with these, the client decodes them, the CLI exits with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: a stable machine-readable code and a sentence for people."""

    model_config = ConfigDict(extra="forbid")

    error: str
    message: str
    details: list[dict[str, Any]] | None = None


class ExitCode(IntEnum):
    """What the `miner` command exits with."""

    OK = 0
    USAGE = 2  # the request is wrong: a bad flag or value, or a 4xx for the request's content
    SERVICE = 3  # the service could not serve it: unreachable, timed out, too busy (429) or failed (5xx)
    JOB_FAILED = 4  # the job ended failed or cancelled where a finished job was needed
    INTERRUPTED = 130  # Ctrl-C


def exit_code_for(status: int) -> ExitCode:
    """The CLI's exit code for an HTTP status: a timeout (408), too busy (429) and 5xx are the service's doing."""
    return ExitCode.SERVICE if status in (408, 429) or status >= 500 else ExitCode.USAGE


NORMAL_CLOSE = 1000  # the event log is complete
SERVICE_FAILED_CLOSE = 1011  # the service failed while streaming: the client reconnects


@dataclass(frozen=True)
class ErrorKind:
    """One row of the table: an error code and its HTTP status (its close code and exit code follow from it)."""

    code: str
    status: int

    @property
    def close_code(self) -> int:
        """A refused event stream closes with 4000 + the HTTP status; a failure of the service with 1011."""
        return SERVICE_FAILED_CLOSE if self.status >= 500 else 4000 + self.status


ERRORS: dict[str, ErrorKind] = {kind.code: kind for kind in (
    ErrorKind("bad_request", 400),
    ErrorKind("unauthorized", 401),
    ErrorKind("forbidden", 403),
    ErrorKind("not_found", 404),
    ErrorKind("method_not_allowed", 405),
    ErrorKind("conflict", 409),
    ErrorKind("too_large", 413),
    ErrorKind("invalid_request", 422),  # the body or a parameter breaks the schema
    ErrorKind("invalid_data", 422),  # valid in form, refused in content (a CSV, a limit of this service)
    ErrorKind("too_many", 429),
    ErrorKind("internal", 500),
    ErrorKind("unavailable", 503),
    ErrorKind("cannot_start", 503),
    ErrorKind("storage_full", 503),  # the disk under the job store is full: running jobs pause until it is not
)}
HTTP_ERROR = "http_error"  # any other refusal, by the web framework or Serve's proxy, with its own status


def refusal(close_code: int) -> ErrorKind | None:
    """The error an event stream was refused with (a 44xx close code); None for any other close."""
    if not 4400 <= close_code < 4500:
        return None
    known = (kind for kind in ERRORS.values() if kind.close_code == close_code)
    return next(known, ErrorKind(HTTP_ERROR, close_code - 4000))
