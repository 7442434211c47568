"""The API the dashboard adds: single-use WebSocket tickets, downsampled candles, and the page itself (public, with a
restrictive Content-Security-Policy)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from schema.errors import ERRORS, NORMAL_CLOSE
from schema.job import JobParameters
from serve_app.dashboard import Tickets, downsample

BTC = "BTC-USD_FIVE_MINUTE"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_is_good_once():
    tickets = Tickets(ttl_s=30, clock=Clock())
    ticket = tickets.issue()
    assert tickets.redeem(ticket) and not tickets.redeem(ticket)


def test_a_ticket_expires():
    clock = Clock()
    tickets = Tickets(ttl_s=30, clock=clock)
    fresh, stale = tickets.issue(), tickets.issue()
    clock.now += 29.9
    assert tickets.redeem(fresh)
    clock.now += 0.1
    assert not tickets.redeem(stale)


def test_wrong_and_missing_tickets_are_refused():
    tickets = Tickets(clock=Clock())
    tickets.issue()
    assert not tickets.redeem("not-a-ticket") and not tickets.redeem(None) and not tickets.redeem("")


def test_expired_tickets_are_forgotten_when_new_ones_are_issued():
    clock = Clock()
    tickets = Tickets(ttl_s=30, clock=clock)
    old = [tickets.issue() for _ in range(5)]
    clock.now += 31
    tickets.issue()
    assert not any(t in tickets._expiry for t in old) and len(tickets._expiry) == 1


def test_downsample_merges_bars_into_ohlc_steps():
    t = np.arange(10) * 300
    price = np.arange(10, dtype=float)
    step, cols = downsample(t, price, price + 0.5, price - 0.5, price + 0.25, points=4)
    assert step == 3 and cols["time"] == [0, 900, 1800, 2700]
    assert cols["open"] == [0, 3, 6, 9] and cols["high"] == [2.5, 5.5, 8.5, 9.5]
    assert cols["low"] == [-0.5, 2.5, 5.5, 8.5] and cols["close"] == [2.25, 5.25, 8.25, 9.25]


def _closed(url: str) -> tuple[int, list[dict]]:
    """Read a stream to its end: (close code, events received)."""


    events = []
    with connect(url, open_timeout=30) as ws:
        try:
            while True:
                events.append(json.loads(ws.recv(timeout=60)))
        except ConnectionClosed as exc:
            return exc.rcvd.code, events


@pytest.fixture(scope="module")
def finished_job(service):
    with service.client() as client:
        job = client.submit(dataset="synthetic", population=6, generations=1, seed=3, permutations=0)
        assert [e.type for e in client.events(job.id)][-1] == "finished"
    return job.id


def _ticket(service) -> dict:
    answer = httpx.post(f"{service.url}/v1/ws-ticket", headers={"Authorization": f"Bearer {service.token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_ticket_opens_one_event_stream(service, client, finished_job):
    ticket = _ticket(service)
    assert ticket["expires_in"] == 30
    url = f"{service.url.replace('http', 'ws')}/v1/jobs/{finished_job}/events?ticket={ticket['ticket']}"
    code, events = _closed(url)
    assert code == NORMAL_CLOSE and [e["seq"] for e in events] == [e.seq for e in client.events(finished_job)]
    assert _closed(url) == (ERRORS["unauthorized"].close_code, [])  # used


def test_a_wrong_ticket_is_refused_with_4401(service, finished_job):
    url = f"{service.url.replace('http', 'ws')}/v1/jobs/{finished_job}/events?ticket=made-up"
    assert _closed(url) == (ERRORS["unauthorized"].close_code, []) == (4401, [])


def test_the_token_in_the_url_still_works_for_old_clients(service, finished_job):
    code, events = _closed(f"{service.url.replace('http', 'ws')}/v1/jobs/{finished_job}/events?token={service.token}")
    assert code == NORMAL_CLOSE and events[-1]["type"] == "finished"


def test_a_ticket_needs_the_token(service):
    answer = httpx.post(f"{service.url}/v1/ws-ticket", headers={"Authorization": "Bearer wrong"})
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"


def _candles(service, name: str, **params) -> httpx.Response:
    return httpx.get(f"{service.url}/v1/datasets/{name}/candles", params=params, timeout=60,
                     headers={"Authorization": f"Bearer {service.token}"})


def test_candles_are_downsampled_from_the_dataset(service, btc_candles):
    answer = _candles(service, BTC, points=500)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    n = len(btc_candles)
    assert body["bars"] == n and body["step"] == -(-n // 500) and len(body["time"]) <= 500
    assert body["fingerprint"] == btc_candles.fingerprint and body["bar_seconds"] == 300
    step = body["step"]
    assert body["time"][1] == btc_candles.timestamp[step] and body["open"][0] == btc_candles.open[0]
    assert body["high"][0] == btc_candles.high[:step].max() and body["low"][0] == btc_candles.low[:step].min()
    assert body["close"][-1] == btc_candles.close[-1]


def test_candles_between_two_times(service, btc_candles):
    start, end = int(btc_candles.timestamp[100]), int(btc_candles.timestamp[199])
    body = _candles(service, BTC, points=1000, start=start, end=end).json()
    assert body["bars"] == 100 and body["step"] == 1 and body["time"][0] == start and body["time"][-1] == end
    assert body["close"] == btc_candles.close[100:200].tolist()


@pytest.mark.parametrize(("name", "params", "status", "code"), [
    ("no-such-data", {}, 404, "not_found"),
    (BTC, {"start": 0, "end": 10}, 404, "not_found"),
    (BTC, {"points": 5}, 422, "invalid_request"),
])
def test_candles_refusals(service, name, params, status, code):
    answer = _candles(service, name, **params)
    assert (answer.status_code, answer.json()["error"]) == (status, code)


def test_candles_need_the_token(service):
    answer = httpx.get(f"{service.url}/v1/datasets/{BTC}/candles")
    assert answer.status_code == 401


def test_the_page_is_public_and_locked_down(service):
    page = httpx.get(f"{service.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    script = httpx.get(f"{service.url}/ui/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{service.url}/ui/../api.py").status_code == 404
    assert httpx.get(f"{service.url}/ui/missing.js").json()["error"] == "not_found"
    docs = httpx.get(f"{service.url}/docs")  # the API's own page keeps working, without the dashboard's policy
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers


def test_the_job_spec_schema_carries_this_service_s_limits_and_default_costs(service):
    """The dashboard's form offers each field with its bounds and default from here, not from a copy of them."""
    auth = {"Authorization": f"Bearer {service.token}"}
    costs = {"fee_bps": 12.5, "slippage_bps": 3.0, "initial_cash": 5000.0}
    with service.deployed(max_population=5000, max_generations=777, default_costs=costs):  # user_config, in place
        schema = httpx.get(f"{service.url}/v1/job-spec", headers=auth, timeout=30).json()
        fields = schema["properties"]
        assert (fields["population"]["maximum"], fields["generations"]["maximum"]) == (5000, 777)
        for name, field in JobParameters.model_fields.items():  # every other bound and default as defined
            assert fields[name]["default"] == field.default, name
        assert (fields["folds"]["minimum"], fields["folds"]["maximum"]) == (1, 20)
        assert {k: p["default"] for k, p in schema["$defs"]["Costs"]["properties"].items()} == costs
        assert schema["$defs"]["RiskLevel"]["enum"] == ["LOW", "MEDIUM", "HIGH"]
    assert httpx.get(f"{service.url}/v1/job-spec", headers={"Authorization": "Bearer wrong"}).status_code == 401
