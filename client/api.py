"""MinerClient: drive a miner service over HTTP and WebSocket. No Ray, no Numba, no numpy.

    from client import MinerClient
    miner = MinerClient("http://head:8000", token="...")
    job = miner.submit(dataset="BTC-USD_FIVE_MINUTE", population=50, generations=20, seed=7)
    for event in miner.events(job.id):      # reconnects by itself, resumes from the last seq seen
        print(event.type, event.data)       # event.data: one of the typed models of schema.events
    print(miner.result(job.id).strategy)

Both ways to the service can be replaced, for tests or other transports: ``transport`` (an httpx transport, such as
``httpx.MockTransport``) carries the HTTP requests, ``open_stream`` opens an event stream (``websocket_stream``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from client import models as wire
from client.errors import AuthError, NotFoundError, ServiceError, ServiceUnreachable
from schema.errors import HTTP_ERROR, NORMAL_CLOSE, refusal
from schema.events import EVENT_TYPES, Event

RECONNECT_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
NOT_RETRIED = ("internal", "cannot_start")  # 5xx that the same request would get again: a bug, a store to restore
OPEN_TIMEOUT_S = 10


class EventStream(Protocol):
    """An open event stream: iterating gives its text messages until it closes; ``close_code`` then says how
    (1000: the log is complete). A refusal or a drop raises ``websockets.exceptions.ConnectionClosed``."""

    close_code: int | None

    def __iter__(self) -> Iterator[str | bytes]: ...


StreamOpener = Callable[[str, dict[str, str]], AbstractContextManager[EventStream]]


def websocket_stream(url: str, headers: dict[str, str]) -> AbstractContextManager[EventStream]:
    """Open an event stream over a WebSocket (the default ``open_stream``)."""
    return connect(url, additional_headers=headers, open_timeout=OPEN_TIMEOUT_S)


class MinerClient:
    def __init__(self, url: str, token: str, *, admin_token: str | None = None, timeout_s: float = 30.0,
                 reconnect_for_s: float = 300.0, retry_submit_for_s: float = 60.0,
                 transport: httpx.BaseTransport | None = None, open_stream: StreamOpener = websocket_stream):
        self.url = url.rstrip("/")
        self.token = token
        self.admin_token = admin_token
        self.reconnect_for_s = reconnect_for_s
        self.retry_submit_for_s = retry_submit_for_s
        self._open_stream = open_stream
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport,
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MinerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- plumbing ------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            raise ServiceUnreachable(self.url, str(exc) or type(exc).__name__, request_sent=not unsent) from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json()

    # ---- service -------------------------------------------------------------------------------------
    def health(self) -> bool:
        return self._request("GET", "/healthz").get("status") == "ok"

    def cluster(self) -> wire.ClusterInfo:
        return wire.ClusterInfo(**self._request("GET", "/v1/cluster"))

    # ---- datasets ------------------------------------------------------------------------------------
    def datasets(self) -> list[wire.DatasetInfo]:
        return [wire.DatasetInfo(**d) for d in self._request("GET", "/v1/datasets")]

    def upload_dataset(self, path: str | Path, name: str | None = None) -> wire.DatasetInfo:
        path = Path(path)
        return wire.DatasetInfo(**self._request("POST", "/v1/datasets", params={"name": name or path.stem},
                                                content=path.read_bytes(), headers={"Content-Type": "text/csv"}))

    # ---- jobs ----------------------------------------------------------------------------------------
    def submit(self, spec: wire.JobSpec | None = None, *, idempotency_key: str | None = None,
               **fields) -> wire.Submitted:
        """Queue a job. Sent with an ``Idempotency-Key`` (new for each call unless given), so when the answer is
        lost (the connection drops or times out after the request went out, or a 5xx while the ingress restarts) the
        same request is sent again, for up to ``retry_submit_for_s``, and the service answers with the job the first
        one created: never two jobs. A service that cannot be connected to at all is reported at once."""
        spec = spec or wire.JobSpec(**fields)
        body = spec.model_dump(mode="json", exclude_none=True, exclude_unset=True)  # the service fills the rest
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return wire.Submitted(**self._request("POST", "/v1/jobs", json=body, headers=headers))
            except (ServiceUnreachable, ServiceError) as exc:
                if isinstance(exc, ServiceUnreachable):
                    retryable = exc.request_sent
                else:  # e.g. Serve's plain-text 500 or 503 while the ingress replica is replaced
                    retryable = exc.status >= 500 and exc.code not in NOT_RETRIED
                if not retryable or time.monotonic() - started > self.retry_submit_for_s:
                    raise
            time.sleep(RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)])
            attempt += 1

    def jobs(self, limit: int = 100) -> list[wire.JobInfo]:
        return [wire.JobInfo(**j) for j in self._request("GET", "/v1/jobs", params={"limit": limit})]

    def job(self, job_id: str) -> wire.JobInfo:
        return wire.JobInfo(**self._request("GET", _job_path(job_id)))

    def result(self, job_id: str) -> wire.JobResult:
        return wire.JobResult(**self._request("GET", f"{_job_path(job_id)}/result"))

    def cancel(self, job_id: str) -> wire.CancelAccepted:
        return wire.CancelAccepted(**self._request("DELETE", _job_path(job_id)))

    # ---- backtests -----------------------------------------------------------------------------------
    def backtest(self, request: wire.BacktestRequest | None = None, **fields) -> wire.BacktestResult:
        """Backtest one strategy on a registered dataset, window and costs (``POST /v1/backtests``):

            miner.backtest(strategy=json.loads(Path("strategy.json").read_text()), dataset="BTC-USD_FIVE_MINUTE",
                           start="2025-12-01", costs={"fee_bps": 25})

        ``strategy`` is a genome or the strategy document ``miner export`` writes; costs left out are the service's
        defaults."""
        request = request or wire.BacktestRequest(**fields)
        body = request.model_dump(mode="json", exclude_none=True, exclude_unset=True)  # the service fills the rest
        return wire.BacktestResult(**self._request("POST", "/v1/backtests", json=body))

    # ---- evaluators ----------------------------------------------------------------------------------
    def evaluators(self) -> list[wire.EvaluatorInfo]:
        return [wire.EvaluatorInfo(**e) for e in self._request("GET", "/v1/evaluators")]

    def push_evaluator(self, name: str, source: str, params: dict | None = None,
                       make_default: bool = False) -> wire.EvaluatorInfo:
        """Add an evaluator version (needs the admin token); the service tries it before accepting it."""
        push = wire.EvaluatorPush(source=source, params=params or {}, make_default=make_default)
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
        return wire.EvaluatorInfo(**self._request("PUT", f"/v1/evaluators/{name}", json=push.model_dump(),
                                                  headers=headers))

    def events(self, job_id: str, since: int = 0) -> Iterator[Event]:
        """Every event after ``since``, live, each exactly once; ends after the terminal event.

        A dropped connection (sleep, Wi-Fi change, service restart) is reopened with the last seq seen,
        for up to ``reconnect_for_s`` seconds of consecutive failures. An event type this client does not know
        (sent by a newer service) is skipped.
        """
        ws_url = self.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        failing_since: float | None = None
        attempt = 0
        while True:
            try:
                with self._open_stream(f"{ws_url}{_job_path(job_id)}/events?since={since}",
                                       {"Authorization": f"Bearer {self.token}"}) as stream:
                    failing_since, attempt = None, 0
                    for message in stream:
                        entry = json.loads(message)
                        if entry["seq"] <= since:
                            continue
                        since = entry["seq"]
                        if entry["type"] not in EVENT_TYPES:
                            continue
                        event = Event(**entry)
                        yield event
                        if event.type in wire.ENDED:
                            return
                    if stream.close_code == NORMAL_CLOSE:  # the service says the log is complete
                        return
            except InvalidStatus as exc:
                # 404 or 5xx on the handshake: the service is starting or restarting (the app's own refusals
                # are close codes, after the handshake), so retry like a dropped connection
                if exc.response.status_code != 404 and exc.response.status_code < 500:
                    raise _error_from_status(exc.response.status_code, exc.response.body) from None
            except ConnectionClosed as exc:
                if exc.rcvd is not None and (refused := refusal(exc.rcvd.code)):
                    raise _error(refused.status, refused.code, exc.rcvd.reason) from None
            except (OSError, WebSocketException, TimeoutError):
                pass
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > self.reconnect_for_s:
                lost = f"event stream of job {job_id} lost for {self.reconnect_for_s:.0f} s"
                raise ServiceUnreachable(self.url, lost)
            time.sleep(RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)])
            attempt += 1

    def wait(self, job_id: str) -> wire.JobInfo:
        """Block until the job ends (following its events), then return its final state."""
        for _ in self.events(job_id):
            pass
        return self.job(job_id)


def _job_path(job_id: str) -> str:
    """A job's URL path; an id is quoted whole, so any text the user typed stays one path segment."""
    return f"/v1/jobs/{quote(job_id, safe='')}"


def _error_from_status(status: int, body: bytes | str | None) -> ServiceError:
    try:
        payload = json.loads(body or b"{}")
        code, message = payload.get("error", HTTP_ERROR), payload.get("message", str(payload))
        details = payload.get("details")
    except (ValueError, AttributeError):
        code, message, details = HTTP_ERROR, (body.decode() if isinstance(body, bytes) else str(body)), None
    return _error(status, code, message, details)


def _error(status: int, code: str, message: str, details: list | None = None) -> ServiceError:
    cls = AuthError if status in (401, 403) else NotFoundError if status == 404 else ServiceError
    return cls(status, code, message, details)


def _error_from(response: httpx.Response) -> ServiceError:
    return _error_from_status(response.status_code, response.content)
