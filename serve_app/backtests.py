"""Re-testing one strategy (``POST /v1/backtests``): any genome on any registered dataset, window and costs.

The ingress checks the strategy (``genome_of``) before it calls the coordinator; the coordinator finds the dataset,
turns the requested times into bars (``window_of``), resolves the costs as a job submission does, and has one worker
of the pool run the full report (its Numba kernels are warm and the dataset's tables are in its node's object store),
so neither the ingress nor the coordinator's event loop ever runs a backtest. The kernel is the one a job's result
comes from, on the same indicator tables, so a job's strategy re-tested over the job's training or holdout window with
the job's costs gives exactly the job's metrics, trades and equity curve.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import ValidationError

from client import models as wire
from client.export import SCHEMA
from engine.backtester import MIN_WINDOW_BARS
from engine.genome import Genome, encode
from schema.errors import ERRORS
from serve_app import mapping
from serve_app.config import RuntimeConfig
from serve_app.datasets import Dataset, DatasetRegistry
from serve_app.errors import MinerError, Unavailable
from serve_app.pool import WorkerPool


class FieldRefused(MinerError):
    """A request refused for what one field says: a 422 whose ``details`` name the field, as the ingress's schema
    errors do. (Picklable: Ray hands it from the coordinator to the ingress.)"""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None, code: str = "invalid_data"):
        super().__init__(message)
        self.kind = ERRORS[code]
        self.details = details

    @classmethod
    def at(cls, field: str, problem: str, code: str = "invalid_data", value: str | None = None) -> FieldRefused:
        """Refused for ``field`` (whose ``value`` the message repeats, if given) because of ``problem``."""
        return cls(f"{field}{'' if value is None else ' ' + value}: {problem}", [{"field": field, "message": problem}],
                   code)


def genome_of(strategy: dict[str, Any]) -> Genome:
    """The genome a request's ``strategy`` holds: the genome JSON itself, or a strategy document (docs/strategy.md,
    recognised by its ``schema`` or ``genome`` key) whose ``genome`` it takes. A bad one is a 422 naming each field
    at fault (``strategy.entry.0.op``, ``strategy.genome.stop_loss``)."""
    where = ("strategy",)
    if "schema" in strategy or "genome" in strategy:
        if strategy.get("schema") != SCHEMA:
            raise FieldRefused.at("strategy.schema", f"a strategy document's schema is '{SCHEMA}'", "invalid_request",
                                  repr(strategy.get("schema"))[:60])
        where, strategy = ("strategy", "genome"), strategy.get("genome")
    try:
        return Genome.model_validate(strategy)
    except ValidationError as exc:
        details = [{"field": ".".join(str(part) for part in (*where, *error["loc"])), "message": error["msg"]}
                   for error in exc.errors()]
        raise FieldRefused("; ".join(f"{d['field']}: {d['message']}" for d in details), details,
                           "invalid_request") from None


def _when(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_of(dataset: Dataset, start: datetime | None, end: datetime | None) -> tuple[int, int]:
    """Bars [first, last + 1) of the dataset from the first bar at or after ``start`` up to the last before ``end``.

    Both times must lie within the dataset (from its first bar to the end of its last), and the window must hold at
    least MIN_WINDOW_BARS bars; each refusal names its field and the dataset's span."""
    info, timestamps = dataset.info, dataset.candles.timestamp
    span = (f"dataset '{info.name}' runs from {_when(info.first_time)} to {_when(info.last_time)} "
            f"({info.bar_seconds} s bars)")
    after_last = info.last_time + info.bar_seconds
    lo, hi = 0, len(timestamps)
    if start is not None:
        at = int(np.ceil(start.timestamp()))
        if not info.first_time <= at <= info.last_time:
            raise FieldRefused.at("start", f"is outside the data: {span}; leave it out to start at the first bar",
                                  value=start.isoformat())  # as given: a time of year 1 has no epoch seconds here
        lo = int(np.searchsorted(timestamps, at, side="left"))
    if end is not None:
        at = int(np.ceil(end.timestamp()))
        if not info.first_time < at <= after_last:
            raise FieldRefused.at("end", f"is outside the data: {span}; leave it out to end with the last bar",
                                  value=end.isoformat())
        hi = int(np.searchsorted(timestamps, at, side="left"))
    if hi - lo < MIN_WINDOW_BARS:
        field = "end" if end is not None else "start" if start is not None else "dataset"
        bars = max(hi - lo, 0)
        raise FieldRefused.at(field, f"the window holds {bars} bar{'' if bars == 1 else 's'}; a backtest needs at "
                                     f"least {MIN_WINDOW_BARS} ({span})")
    return lo, hi


async def run(request: wire.BacktestRequest, datasets: DatasetRegistry, runtime: RuntimeConfig,
              pool: WorkerPool) -> dict[str, Any]:
    """The ``BacktestResult`` of one request (as JSON), backtested by a worker of the pool."""
    genome = genome_of(request.strategy)
    dataset = datasets.get(request.dataset)  # 404 for an unknown dataset, 422 for one that failed validation
    lo, hi = window_of(dataset, request.start, request.end)
    costs = mapping.resolve_costs(request.costs, runtime)
    datasets.mined(dataset)  # its tables count among the few kept ready, like a mined dataset's
    ref = await asyncio.to_thread(lambda: dataset.ref)  # the tables, computed once per dataset (seconds)
    candles = dataset.candles
    try:
        backtest = await pool.call("report", candles.fingerprint, [ref], costs, encode(genome), lo, hi)
    except TimeoutError as exc:
        raise Unavailable(f"no worker could run the backtest ({exc}); retry in a few seconds") from None
    return wire.BacktestResult(
        **backtest, strategy=genome.describe(), genome=genome.model_dump(mode="json"), dataset=request.dataset,
        data_fingerprint=candles.fingerprint, first_time=int(candles.timestamp[lo]),
        last_time=int(candles.timestamp[hi - 1]), bars=hi - lo, costs=costs).model_dump(mode="json")
