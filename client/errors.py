"""What the client raises: one tree, each error carrying the service's own message."""

from __future__ import annotations


class MinerClientError(Exception):
    """Base class of every client error."""


class ServiceUnreachable(MinerClientError):
    """No answer from the URL (wrong address, service down, network). ``request_sent`` False: no connection was
    made, so the service cannot have acted on the request."""

    def __init__(self, url: str, reason: str, request_sent: bool = True):
        super().__init__(f"cannot reach the miner service at {url}: {reason}")
        self.url, self.request_sent = url, request_sent


class ServiceError(MinerClientError):
    """The service answered with an error status; ``code`` and ``message`` come from its JSON body."""

    def __init__(self, status: int, code: str, message: str, details: list | None = None):
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status, self.code, self.message, self.details = status, code, message, details


class AuthError(ServiceError):
    """401/403: missing, wrong or insufficient token."""


class NotFoundError(ServiceError):
    """404: unknown job or dataset."""
