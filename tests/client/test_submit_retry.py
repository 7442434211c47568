"""MinerClient.submit sends one Idempotency-Key per call and sends the same request again, under that key, when the
answer is lost; no service needed (httpx's mock transport plays it)."""

from __future__ import annotations

import httpx
import pytest

from client import MinerClient
from client.errors import ServiceError, ServiceUnreachable

SPEC = {"dataset": "synthetic", "population": 10, "generations": 2, "seed": 5}


def scripted(*steps):
    """A transport answering each request with the next step: an exception to raise, or (status, body)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = steps[min(len(seen), len(steps)) - 1]
        if isinstance(step, Exception):
            raise step
        status, body = step
        return httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, text=body)

    return httpx.MockTransport(handle), seen


def test_a_lost_answer_is_retried_with_the_same_key_and_the_next_call_gets_a_new_one(monkeypatch):
    monkeypatch.setattr("client.api.RECONNECT_DELAYS_S", (0.0,))
    transport, seen = scripted(httpx.ReadTimeout("no answer"), (500, "Internal Server Error"),
                               (503, {"error": "unavailable", "message": "restarting"}),
                               (202, {"id": "j1", "status": "queued"}))
    with MinerClient("http://miner", "t", transport=transport) as client:
        assert client.submit(**SPEC).id == "j1"
        assert len(seen) == 4 and len({r.headers["Idempotency-Key"] for r in seen}) == 1
        assert len({r.content for r in seen}) == 1  # the same body each time
        client.submit(**SPEC)
        assert seen[-1].headers["Idempotency-Key"] != seen[0].headers["Idempotency-Key"]
        client.submit(idempotency_key="mine", **SPEC)
        assert seen[-1].headers["Idempotency-Key"] == "mine"


@pytest.mark.parametrize(("step", "error"), [
    ((409, {"error": "conflict", "message": "key used"}), ServiceError),
    ((500, {"error": "internal", "message": "a bug"}), ServiceError),
    ((503, {"error": "cannot_start", "message": "the job store is damaged"}), ServiceError),
    (httpx.ConnectError("refused"), ServiceUnreachable)], ids=["409", "internal", "cannot_start", "never connected"])
def test_answers_a_retry_cannot_change_are_reported_at_once(step, error):
    transport, seen = scripted(step)
    with MinerClient("http://miner", "t", transport=transport) as client, pytest.raises(error):
        client.submit(**SPEC)
    assert len(seen) == 1


def test_retries_stop_after_retry_submit_for_s(monkeypatch):
    monkeypatch.setattr("client.api.RECONNECT_DELAYS_S", (0.05,))
    transport, seen = scripted((502, "Bad Gateway"))
    client = MinerClient("http://miner", "t", transport=transport, retry_submit_for_s=0.3)
    with client, pytest.raises(ServiceError, match="Bad Gateway"):
        client.submit(**SPEC)
    assert 2 <= len(seen) <= 10
