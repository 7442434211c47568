"""POST /v1/backtests on the real service: a job's strategy re-tested on the job's dataset, window and costs is exactly
the job's own backtest (metrics, trades, equity curve), for its training and its holdout bars, given as a genome or as
the strategy document `miner export` writes; a bad request is a 404 or a 422 whose JSON body names the field."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from client import export
from client import models as wire
from engine.backtester import LocalBacktester, Window
from engine.genome import Genome, encode
from engine.synthetic import synthetic_candles

from .jobs import store_snapshot

COSTS = {"fee_bps": 25.0, "slippage_bps": 3.0, "initial_cash": 5_000.0}
SPEC = {"dataset": "synthetic", "population": 16, "generations": 2, "seed": 21, "risk": "HIGH", "permutations": 0,
        "hall_of_fame": 3, "costs": COSTS}
GENOME = {"direction": "long", "entry": [{"left": {"field": "close"}, "op": ">", "right": {"indicator": "sma",
                                                                                              "period": 20}}],
          "exit": [], "stop_loss": 0.02, "take_profit": 0.04}


def iso(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


@pytest.fixture(scope="module")
def finished(service) -> tuple[wire.JobInfo, wire.JobResult]:
    with service.client() as client:
        job = client.submit(**SPEC)
        assert client.wait(job.id).status == "finished"
        return client.job(job.id), client.result(job.id)


def same_backtest(tested: wire.BacktestResult, original: wire.Backtest) -> bool:
    return (tested.metrics, tested.trades, tested.equity) == (original.metrics, original.trades, original.equity)


def test_a_job_s_strategy_re_tested_on_its_windows_and_costs_is_the_job_s_own_backtest(client, finished):
    job, result = finished
    assert job.spec.costs == wire.Costs(**COSTS)
    holdout_start = result.holdout.equity.time[0]  # the training window is every bar before it
    train = client.backtest(strategy=result.genome, dataset="synthetic", end=holdout_start, costs=COSTS)
    assert same_backtest(train, result.train) and train.metrics["trades"] > 0
    assert (train.first_time, train.bars, train.costs) == (result.train.equity.time[0], 24_000, job.spec.costs)
    assert (train.genome, train.strategy, train.data_fingerprint) == (result.genome, result.strategy,
                                                                      result.data_fingerprint)
    # the file `miner export` writes, as it is, and the holdout given as an ISO time
    document = export.strategy_document(job, result)
    holdout = client.backtest(strategy=document, dataset="synthetic", start=iso(holdout_start), costs=COSTS)
    assert same_backtest(holdout, result.holdout) and holdout.bars == 6_000
    # the hall of fame's runner-up, on the training bars
    second = result.hall_of_fame[1]
    assert client.backtest(strategy=second.genome, dataset="synthetic", end=holdout_start,
                           costs=COSTS).metrics == second.train_metrics


def test_costs_left_out_are_the_service_s_defaults_and_any_window_is_the_engine_s(client):
    candles = synthetic_candles()
    start, end = int(candles.timestamp[1_000]), int(candles.timestamp[7_000])
    tested = client.backtest(strategy=GENOME, dataset="synthetic", start=start, end=iso(end),
                             costs={"fee_bps": 10.0})
    costs = wire.Costs(fee_bps=10.0)  # the deployed config's defaults for the rest (deploy/config.yaml)
    engine = LocalBacktester(candles, costs).report(encode(Genome.model_validate(GENOME)), Window(1_000, 7_000))
    assert tested.costs == costs and (tested.first_time, tested.last_time, tested.bars) == (start, end - 300, 6_000)
    assert tested.metrics == engine.metrics and [t.model_dump() for t in tested.trades] == engine.trades
    assert tested.equity.time[0] == start and tested.equity.time[-1] == end - 300 and len(tested.equity.time) <= 2_001


def refused(service, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{service.url}/v1/backtests", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {service.token}"} if headers is None else headers)


FIRST = synthetic_candles().timestamp[0]
CASES = {
    "unknown dataset": ({"dataset": "nope"}, 404, "not_found", None, "unknown dataset 'nope'; available: "),
    "no strategy": ({"strategy": None}, 422, "invalid_request", "strategy", "valid dictionary"),
    "no dataset": ({"dataset": None}, 422, "invalid_request", "dataset", "string"),
    "a direction that is none": ({"strategy": {**GENOME, "direction": "up"}}, 422, "invalid_request",
                                 "strategy.direction", "'long' or 'short'"),
    "an operator that is none": ({"strategy": {**GENOME, "entry": [{**GENOME["entry"][0], "op": "=="}]}}, 422,
                                 "invalid_request", "strategy.entry.0.op", "'>'"),
    "a period beyond the menu's bounds": (
        {"strategy": {**GENOME, "entry": [{**GENOME["entry"][0], "right": {"indicator": "sma", "period": 9999}}]}},
        422, "invalid_request", "strategy.entry.0.right.IndicatorOperand.period", "between 2 and 500"),
    "a document of another schema": ({"strategy": {"schema": "strategy-miner/strategy/9", "genome": GENOME}}, 422,
                                     "invalid_request", "strategy.schema", "strategy-miner/strategy/1"),
    "a document with a broken genome": ({"strategy": {"schema": export.SCHEMA, "genome": {**GENOME, "size": 7}}},
                                        422, "invalid_request", "strategy.genome.size", "size"),
    "start not a time": ({"start": "yesterday"}, 422, "invalid_request", "start", "datetime"),
    "end before start": ({"start": iso(FIRST + 86_400), "end": iso(FIRST)}, 422, "invalid_request", "end",
                         "must be after start"),
    "start after the data": ({"start": "2035-01-01"}, 422, "invalid_data", "start",
                             "is outside the data: dataset 'synthetic' runs from 2025-01-01T00:00:00Z"),
    "start before the data": ({"start": "2024-12-31"}, 422, "invalid_data", "start", "is outside the data"),
    "end after the data": ({"end": "2035-01-01"}, 422, "invalid_data", "end", "is outside the data"),
    "start in year 1": ({"start": "0001-01-01T00:00:00+14:00"}, 422, "invalid_data", "start", "is outside the data"),
    "end in year 9999": ({"end": "9999-12-31T23:59:59-14:00"}, 422, "invalid_data", "end", "is outside the data"),
    "too few bars": ({"start": iso(FIRST), "end": iso(FIRST + 99 * 300)}, 422, "invalid_data", "end",
                     "the window holds 99 bars; a backtest needs at least 100"),
    "a negative fee": ({"costs": {"fee_bps": -1}}, 422, "invalid_request", "costs.fee_bps", "greater than"),
    "an unknown field": ({"colour": "red"}, 422, "invalid_request", "colour", "Extra inputs"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_bad_backtest_request_is_a_4xx_whose_json_names_the_field_and_changes_nothing(service, case):
    change, status, code, field, words = case
    before = store_snapshot(service)
    answer = refused(service, {"strategy": GENOME, "dataset": "synthetic", **change})
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == code and words in body["message"], body
    if field is not None:
        assert field in [detail["field"] for detail in body["details"]], body
        assert any(words in detail["message"] for detail in body["details"]), body
    assert store_snapshot(service) == before


def test_a_backtest_needs_the_token_and_a_body_within_the_limit(service):
    assert refused(service, {"strategy": GENOME, "dataset": "synthetic"}, headers={}).status_code == 401
    huge = refused(service, {"strategy": {**GENOME, "note": "x" * 2_000_000}, "dataset": "synthetic"})
    assert huge.status_code == 413 and huge.json()["error"] == "too_large"
