"""MinerClient: drive a miner service over HTTP and WebSocket. No Ray, no Numba, no numpy.

    from client import MinerClient
    miner = MinerClient("http://head:8000", token="...")
    job = miner.submit(dataset="BTC-USD_FIVE_MINUTE", population=50, generations=20, seed=7)
    for event in miner.events(job.id):      # reconnects by itself, resumes from the last seq seen
        print(event.type, event.data)
    print(miner.result(job.id).strategy)
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from client import models as wire
from client.errors import AuthError, NotFoundError, ServiceError, ServiceUnreachable

RECONNECT_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
NOT_RETRIED = ("internal", "cannot_start")  # 5xx that the same request would get again: a bug, a store to restore


class MinerClient:
    def __init__(self, url: str, token: str, *, admin_token: str | None = None, timeout_s: float = 30.0,
                 reconnect_for_s: float = 300.0, retry_submit_for_s: float = 60.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.token = token
        self.admin_token = admin_token
        self.reconnect_for_s = reconnect_for_s
        self.retry_submit_for_s = retry_submit_for_s
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
        body = spec.model_dump(mode="json", exclude_none=True)
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
        return wire.JobInfo(**self._request("GET", f"/v1/jobs/{job_id}"))

    def result(self, job_id: str) -> wire.JobResult:
        return wire.JobResult(**self._request("GET", f"/v1/jobs/{job_id}/result"))

    def cancel(self, job_id: str) -> dict:
        return self._request("DELETE", f"/v1/jobs/{job_id}")

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

    def events(self, job_id: str, since: int = 0) -> Iterator[wire.Event]:
        """Every event after ``since``, live, each exactly once; ends after the terminal event.

        A dropped connection (sleep, Wi-Fi change, service restart) is reopened with the last seq seen,
        for up to ``reconnect_for_s`` seconds of consecutive failures.
        """
        ws_url = self.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        failing_since: float | None = None
        attempt = 0
        while True:
            try:
                with connect(f"{ws_url}/v1/jobs/{job_id}/events?since={since}",
                             additional_headers={"Authorization": f"Bearer {self.token}"},
                             open_timeout=10) as ws:
                    failing_since, attempt = None, 0
                    for message in ws:
                        event = wire.Event(**json.loads(message))
                        if event.seq <= since:
                            continue
                        since = event.seq
                        yield event
                        if event.type in wire.TERMINAL_EVENTS:
                            return
                    if ws.close_code == 1000:  # the service says the log is complete
                        return
            except InvalidStatus as exc:
                # 404 or 5xx on the handshake: the service is starting or restarting (the app's own refusals
                # are close codes, after the handshake), so retry like a dropped connection
                if exc.response.status_code != 404 and exc.response.status_code < 500:
                    raise _error_from_status(exc.response.status_code, exc.response.body) from None
            except ConnectionClosed as exc:
                if exc.rcvd is not None and 4400 <= exc.rcvd.code < 4500:  # refused: 4000 + the HTTP status
                    status = exc.rcvd.code - 4000
                    raise _error(status, WS_REFUSALS.get(status, "refused"), exc.rcvd.reason) from None
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


WS_REFUSALS = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 429: "too_many"}


def _error_from_status(status: int, body: bytes | str | None) -> ServiceError:
    try:
        payload = json.loads(body or b"{}")
        code, message = payload.get("error", "http_error"), payload.get("message", str(payload))
        details = payload.get("details")
    except (ValueError, AttributeError):
        code, message, details = "http_error", (body.decode() if isinstance(body, bytes) else str(body)), None
    return _error(status, code, message, details)


def _error(status: int, code: str, message: str, details: list | None = None) -> ServiceError:
    cls = AuthError if status in (401, 403) else NotFoundError if status == 404 else ServiceError
    return cls(status, code, message, details)


def _error_from(response: httpx.Response) -> ServiceError:
    return _error_from_status(response.status_code, response.content)
