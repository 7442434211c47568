"""Thin client for the strategy-miner service: HTTP + WebSocket only (no Ray, no Numba, no numpy)."""

from client.api import MinerClient
from client.errors import AuthError, MinerClientError, NotFoundError, ServiceError, ServiceUnreachable

__all__ = ["AuthError", "MinerClient", "MinerClientError", "NotFoundError", "ServiceError", "ServiceUnreachable"]
