"""Hostile and careless input: each bad request gets the documented 4xx, a JSON body whose message names the
problem, and leaves the store exactly as it was. One table, over real HTTP and WebSocket."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field

import httpx
import pytest

from client import MinerClient, ServiceError
from tests.service_fixture import ADMIN_TOKEN, TOKEN

from .jobs import store_snapshot

HEADER = "timestamp,open,high,low,close,volume"


def as_json(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
GOOD_ROW = "1751328000,100,101,99,100.5,3"
NEXT_ROW = "1751328300,100.5,102,100,101,4"


def csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Bad:
    name: str
    method: str
    path: str
    status: int
    words: str
    json: object = None
    content: bytes | None = None
    params: dict = field(default_factory=dict)
    headers: dict | None = None  # None: the ordinary token


def job(**fields) -> dict:
    return {"dataset": "synthetic", "population": 6, "generations": 1, **fields}


def upload(name: str, content: bytes, status: int, words: str) -> Bad:
    return Bad(f"upload {name}", "POST", "/v1/datasets", status, words, content=content,
               params={"name": name})


CASES = [
    # tokens
    Bad("no token", "GET", "/v1/jobs", 401, "Bearer", headers={}),
    Bad("wrong token", "GET", "/v1/cluster", 401, "wrong token", headers={"Authorization": "Bearer nope"}),
    Bad("wrong token on submit", "POST", "/v1/jobs", 401, "wrong token", json=job(),
        headers={"Authorization": "Bearer nope"}),
    Bad("basic instead of bearer", "GET", "/v1/datasets", 401, "Bearer", headers={"Authorization": "Basic eDp5"}),
    Bad("ordinary token pushes an evaluator", "PUT", "/v1/evaluators/mine", 403, "admin token",
        json={"source": "def score(m):\n    return m.sharpe\n"}),
    # job specs: malformed, wrong types, out of range, unknown names
    Bad("malformed JSON", "POST", "/v1/jobs", 422, "body: not valid JSON at character",
        content=b'{"dataset": "synthetic",', headers=as_json(TOKEN)),
    Bad("bytes after the JSON", "POST", "/v1/jobs", 422, "body: not valid JSON at character 24",
        content=b'{"dataset": "synthetic"}xx', headers=as_json(TOKEN)),
    Bad("a list instead of an object", "POST", "/v1/jobs", 422, "valid dictionary", json=[1, 2]),
    Bad("population as text", "POST", "/v1/jobs", 422, "population", json=job(population="many")),
    Bad("population too small", "POST", "/v1/jobs", 422, "population", json=job(population=2)),
    Bad("population beyond the schema", "POST", "/v1/jobs", 422, "population", json=job(population=100_001)),
    Bad("population beyond this service's limit", "POST", "/v1/jobs", 422, "max_population",
        json=job(population=50_000)),
    Bad("zero generations", "POST", "/v1/jobs", 422, "generations", json=job(generations=0)),
    Bad("generations beyond this service's limit", "POST", "/v1/jobs", 422, "max_generations",
        json=job(generations=20_000)),
    Bad("holdout fraction too large", "POST", "/v1/jobs", 422, "holdout_fraction", json=job(holdout_fraction=0.9)),
    Bad("holdout fraction as text", "POST", "/v1/jobs", 422, "holdout_fraction", json=job(holdout_fraction="half")),
    Bad("negative seed", "POST", "/v1/jobs", 422, "seed", json=job(seed=-1)),
    Bad("unknown risk level", "POST", "/v1/jobs", 422, "risk", json=job(risk="EXTREME")),
    Bad("negative fee", "POST", "/v1/jobs", 422, "costs.fee_bps", json=job(costs={"fee_bps": -1})),
    Bad("no starting cash", "POST", "/v1/jobs", 422, "costs.initial_cash", json=job(costs={"initial_cash": 0})),
    Bad("a sliver of starting cash (return would overflow)", "POST", "/v1/jobs", 422, "costs.initial_cash",
        json=job(costs={"initial_cash": 1e-300})),
    Bad("absurd starting cash", "POST", "/v1/jobs", 422, "costs.initial_cash", json=job(costs={"initial_cash": 1e15})),
    Bad("zero folds", "POST", "/v1/jobs", 422, "folds", json=job(folds=0)),
    Bad("too many folds", "POST", "/v1/jobs", 422, "folds", json=job(folds=21)),
    Bad("negative min_trades", "POST", "/v1/jobs", 422, "min_trades", json=job(min_trades=-1)),
    Bad("min_trades beyond 10,000", "POST", "/v1/jobs", 422, "min_trades", json=job(min_trades=10_001)),
    Bad("negative permutations", "POST", "/v1/jobs", 422, "permutations", json=job(permutations=-1)),
    Bad("permutations beyond 999", "POST", "/v1/jobs", 422, "permutations", json=job(permutations=1000)),
    Bad("permutations as text", "POST", "/v1/jobs", 422, "permutations", json=job(permutations="many")),
    # true is not 1: "permutations": true would have run one shuffled copy (never p <= 0.05), without a word
    Bad("permutations as true", "POST", "/v1/jobs", 422, "permutations: Value error, must be a number, not true",
        json=job(permutations=True)),
    Bad("islands as true", "POST", "/v1/jobs", 422, "islands", json=job(islands=True)),
    Bad("a fee as false", "POST", "/v1/jobs", 422, "costs.fee_bps", json=job(costs={"fee_bps": False})),
    Bad("a strategy's stop as true", "POST", "/v1/backtests", 422, "must be a number, not true",
        json={"dataset": "synthetic", "strategy": {"entry": [{"left": {"field": "close"}, "op": ">",
                                                              "right": {"constant": 0}}], "stop_loss": True}}),
    Bad("unknown field", "POST", "/v1/jobs", 422, "colour", json=job(colour="red")),
    Bad("no dataset", "POST", "/v1/jobs", 422, "dataset", json={"population": 10}),
    Bad("unknown dataset", "POST", "/v1/jobs", 404, "unknown dataset 'nope'; available: BTC-USD_FIVE_MINUTE",
        json=job(dataset="nope")),
    Bad("unknown evaluator", "POST", "/v1/jobs", 404, "unknown evaluator 'sharp'; known evaluators: balanced",
        json=job(evaluator="sharp")),
    Bad("unknown evaluator version", "POST", "/v1/jobs", 404, "balanced@000000", json=job(evaluator="balanced@000000")),
    Bad("evaluator as a lone surrogate", "POST", "/v1/jobs", 422, "evaluator",  # JSON may escape one; UTF-8 not
        content=json.dumps(job(evaluator="\udc80")).encode(), headers=as_json(TOKEN)),
    # unknown jobs, bad query parameters
    Bad("status of an unknown job", "GET", "/v1/jobs/zzz", 404, "unknown job 'zzz'"),
    Bad("result of an unknown job", "GET", "/v1/jobs/zzz/result", 404, "unknown job 'zzz'"),
    Bad("cancel an unknown job", "DELETE", "/v1/jobs/zzz", 404, "unknown job 'zzz'"),
    Bad("unknown route", "GET", "/v1/strategies", 404, "no such route: GET /v1/strategies"),
    Bad("wrong method", "PATCH", "/v1/jobs", 405, "PATCH is not allowed on /v1/jobs", json=job()),
    Bad("list limit zero", "GET", "/v1/jobs", 422, "limit", params={"limit": 0}),
    Bad("list limit as text", "GET", "/v1/jobs", 422, "limit", params={"limit": "all"}),
    # evaluator pushes (admin token): the schema refuses before any code runs
    Bad("empty evaluator source", "PUT", "/v1/evaluators/mine", 422, "source", json={"source": ""},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
    Bad("evaluator parameter as text", "PUT", "/v1/evaluators/mine", 422, "params.w",
        json={"source": "def score(m):\n    return m.sharpe\n", "params": {"w": "heavy"}},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
    Bad("evaluator parameter named with a lone surrogate", "PUT", "/v1/evaluators/mine", 422, "params",
        content=json.dumps({"source": "def score(m):\n    return 0\n", "params": {"\udc80": 1}}).encode(),
        headers=as_json(ADMIN_TOKEN)),
    Bad("evaluator parameter not finite", "PUT", "/v1/evaluators/mine", 422, "params.w",
        content=json.dumps({"source": "PARAMS = {'w': 1}\n\n\ndef score(m, w):\n    return w\n",
                            "params": {"w": float("inf")}}).encode(), headers=as_json(ADMIN_TOKEN)),
    *[Bad(f"evaluator named {name!r}", "PUT", f"/v1/evaluators/{name}", 422, "name",
          json={"source": "def score(m):\n    return m.sharpe\n"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
      for name in ("Sharpe", "9lives", "my-eval", "a" * 41, "%2e%2e")],
    # uploads: name, size, and every defect the candle validator detects
    Bad("upload without a name", "POST", "/v1/datasets", 422, "name", content=csv(HEADER, GOOD_ROW)),
    upload("../evil", csv(HEADER, GOOD_ROW), 422, "dataset name"),
    upload("huge", b"x" * 6_000_000, 413, "limit is 5 MB"),
    upload("empty", b"", 422, "the file is empty"),
    upload("header_only", csv(HEADER), 422, "no candles"),
    upload("no_volume", csv("timestamp,open,high,low,close", "1751328000,1,2,0.5,1.5"), 422,
           "missing column(s) volume"),
    upload("text_price", csv(HEADER, "1751328000,1,2,0.5,abc,1"), 422, "row 2, column 'close': 'abc' is not a number"),
    upload("nan_price", csv(HEADER, GOOD_ROW, "1751328300,nan,102,100,101,4"), 422,
           "row 3, column 'open': value is missing"),
    upload("negative_price", csv(HEADER, "1751328000,-1,2,-2,1,1"), 422, "price must be positive"),
    upload("negative_volume", csv(HEADER, "1751328000,100,101,99,100.5,-3"), 422, "volume must not be negative"),
    upload("duplicate_time", csv(HEADER, GOOD_ROW, GOOD_ROW), 422, "row 3, column 'timestamp': duplicate timestamp"),
    upload("time_backwards", csv(HEADER, NEXT_ROW, GOOD_ROW), 422, "timestamps must increase"),
    upload("high_below_low", csv(HEADER, "1751328000,100,98,99,100,3"), 422, "high is below low"),
    upload("close_outside_bar", csv(HEADER, "1751328000,100,101,99,150,3"), 422, "close is outside the bar"),
    upload("bad_timestamp", csv(HEADER, "yesterday,100,101,99,100.5,3"), 422, "'yesterday' is not a timestamp"),
    upload("missing_timestamp", csv(HEADER, GOOD_ROW, ",100.5,102,100,101,4"), 422, "timestamp is missing"),
    upload("gzipped", gzip.compress(csv(HEADER, GOOD_ROW)), 422, "not UTF-8 text"),
    upload("ragged_row", csv(HEADER, GOOD_ROW, "1,2,3,4,5,6,7,8,9"), 422, "not a well-formed CSV"),
    upload("far_future", csv(HEADER, "100000000000000000,100,101,99,100.5,3"), 422, "timestamp out of range"),
    upload("too_short", csv(HEADER, *(f"{1751328000 + 300 * i},100,101,99,100.5,3" for i in range(50))), 422,
           "holds 50 candles; a backtest needs at least 100"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_request_gets_a_4xx_that_names_the_problem_and_changes_nothing(service, case):
    before = store_snapshot(service)
    headers = {"Authorization": f"Bearer {service.token}"} if case.headers is None else case.headers
    answer = httpx.request(case.method, f"{service.url}{case.path}", json=case.json, content=case.content,
                           params=case.params, headers=headers, timeout=30)
    assert answer.status_code == case.status, answer.text
    body = answer.json()
    assert set(body) >= {"error", "message"} and case.words in body["message"], body
    assert store_snapshot(service) == before


@pytest.mark.parametrize(
    ("job_id", "since", "token", "status", "words"),
    [("real", "abc", None, 400, "since must be a whole number"),
     ("real", "-1", None, 400, "since must be a whole number"),
     ("real", "9" * 30, None, 400, "since must be a whole number"),
     ("real", "\u00b2", None, 400, "since must be a whole number"),
     ("real", "0", "nope", 401, "wrong token"),
     ("no-such-job", "0", None, 404, "unknown job 'no-such-job'")],
    ids=["since not a number", "negative since", "since beyond 64 bits", "since a superscript digit", "wrong token",
         "unknown job"])
def test_a_bad_event_stream_request_is_closed_with_a_code_that_names_the_problem(service, client, job_id, since,
                                                                                  token, status, words):
    if job_id == "real":
        job_id = client.submit(dataset="synthetic", population=6, generations=1).id
        client.wait(job_id)
    before = store_snapshot(service)
    with MinerClient(service.url, token or service.token) as follower, pytest.raises(ServiceError) as refused:
        list(follower.events(job_id, since=since))
    assert refused.value.status == status and words in refused.value.message
    assert store_snapshot(service) == before


def test_health_needs_no_token(service):
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}
