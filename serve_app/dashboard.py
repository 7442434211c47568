"""The web dashboard's side of the ingress: the page and its assets at ``/``, single-use WebSocket tickets, and
downsampled candles for the result chart.

The page (``serve_app/web/``, plain ES modules, no build step) is public like ``/healthz``: it holds no data, and
every data request it makes carries the token, which it keeps in the browser's session storage. A browser cannot
set headers on a WebSocket, so the page first trades its token for a ticket (``POST /v1/ws-ticket``) and opens the
event stream with ``?ticket=``: the token never appears in a URL. docs/dashboard.md describes the page.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from schema.errors import ErrorBody
from serve_app.datasets import DatasetRegistry

WEB = Path(__file__).parent / "web"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# the page's own files only: no inline script or style, nothing from another origin, no framing
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate, so a redeployed page is seen at once
}
TICKET_TTL_S = 30
MAX_LIVE_TICKETS = 10_000


class Tickets:
    """Single-use WebSocket tickets, each valid for ``ttl_s`` seconds after it is issued.

    Kept in the ingress replica's memory (the deployment runs one replica): a ticket is worth one event stream
    opened within seconds, so losing them in a redeploy costs the page one retry.
    """

    def __init__(self, ttl_s: float = TICKET_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self._clock = clock
        self._expiry: dict[str, float] = {}  # in issue order, so the oldest (first to expire) come first

    def issue(self) -> str:
        now = self._clock()
        for ticket, expiry in list(self._expiry.items()):
            if expiry > now and len(self._expiry) < MAX_LIVE_TICKETS:
                break
            del self._expiry[ticket]
        ticket = secrets.token_urlsafe(32)
        self._expiry[ticket] = now + self.ttl_s
        return ticket

    def redeem(self, ticket: str | None) -> bool:
        """True once for a ticket issued less than ``ttl_s`` ago; it is spent whether or not it was still valid."""
        expiry = self._expiry.pop(ticket, None) if ticket else None
        return expiry is not None and self._clock() < expiry


TICKETS = Tickets()
SOURCE_LOCK = threading.Lock()  # the candle source is made on first use, once


class WsTicket(BaseModel):
    ticket: str = Field(description="send as ?ticket= when opening an event stream; valid once")
    expires_in: int = Field(description="seconds left to use it")


class CandleSeries(BaseModel):
    """A dataset's candles in columns, ``step`` consecutive bars merged into each point (first open, highest high,
    lowest low, last close; ``time`` is the first bar's)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    fingerprint: str
    bar_seconds: int
    bars: int = Field(description="bars between start and end, before merging")
    step: int = Field(description="bars merged into each point")
    time: list[int]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]


def downsample(timestamp: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
               points: int) -> tuple[int, dict[str, list]]:
    """(step, columns): at most ``points`` candles, each merging ``step`` consecutive bars."""
    step = max(1, math.ceil(len(close) / points))
    starts = np.arange(0, len(close), step)
    last = np.minimum(starts + step, len(close)) - 1
    return step, {"time": timestamp[starts].tolist(), "open": open_[starts].tolist(),
                  "high": np.maximum.reduceat(high, starts).tolist(), "low": np.minimum.reduceat(low, starts).tolist(),
                  "close": close[last].tolist()}


class CandleSource:
    """The datasets as the coordinator sees them (same files, same validation), loaded in the ingress on first use
    for the chart only; mining never reads them from here."""

    def __init__(self, settings):
        data_dir = settings.path(settings.data_dir) if settings.data_dir else None
        self.registry = DatasetRegistry(data_dir, settings.path(settings.upload_dir),
                                        int(settings.max_upload_mb * 1e6))

    def series(self, name: str, points: int, start: int | None, end: int | None) -> CandleSeries:
        dataset = self.registry.get(name)  # the registry is thread-safe
        c = dataset.candles
        first, stop = np.searchsorted(c.timestamp, [start if start is not None else c.timestamp[0],
                                                    end + 1 if end is not None else c.timestamp[-1] + 1])
        if first >= stop:
            raise HTTPException(404, f"dataset '{name}' has no candles between {start} and {end}")
        window = slice(first, stop)
        step, columns = downsample(c.timestamp[window], c.open[window], c.high[window], c.low[window],
                                   c.close[window], points)
        return CandleSeries(dataset=name, fingerprint=dataset.info.fingerprint, bar_seconds=c.bar_seconds,
                            bars=int(stop - first), step=step, **columns)


def _asset(path: Path) -> FileResponse:
    return FileResponse(path, media_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                        headers=SECURITY_HEADERS)


ASSETS = {p.relative_to(WEB).as_posix(): p for p in WEB.rglob("*") if p.suffix in CONTENT_TYPES}
pages = APIRouter()  # public, like /healthz: the page and its assets hold no data
routes = APIRouter()  # /v1 routes: api.py mounts them with its token check and error answers


@pages.get("/", include_in_schema=False)
def page() -> FileResponse:
    return _asset(WEB / "index.html")


@pages.get("/ui/{name:path}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, f"no such file of the dashboard: {name}")
    return _asset(ASSETS[name])


@routes.post("/v1/ws-ticket", tags=["service"])
def ws_ticket() -> WsTicket:
    """A single-use ticket to open one event stream with ``?ticket=`` instead of the token (browsers cannot set
    headers on a WebSocket, and a token in a URL ends up in logs and history)."""
    return WsTicket(ticket=TICKETS.issue(), expires_in=round(TICKETS.ttl_s))


@routes.get("/v1/datasets/{name}/candles", tags=["datasets"], responses={
    404: {"model": ErrorBody, "description": "`not_found`: no such dataset, or no candles between start and end"},
    422: {"model": ErrorBody, "description": "`invalid_request` or `invalid_data` (a dataset file that fails "
                                             "validation)"}})
def candles(request: Request, name: str,
            points: int = Query(1000, ge=10, le=10_000, description="at most this many candles"),
            start: int | None = Query(None, ge=0, le=2**62,
                                      description="first bar's time, epoch seconds (default: the first)"),
            end: int | None = Query(None, ge=0, le=2**62,
                                    description="last bar's time, epoch seconds (default: the last)"),
            ) -> CandleSeries:
    """A dataset's candles for charts, downsampled to at most ``points`` (bars merged in equal steps)."""
    state = request.app.state
    with SOURCE_LOCK:
        if not hasattr(state, "candle_source"):
            state.candle_source = CandleSource(state.settings)
    return state.candle_source.series(name, points, start, end)
