"""The one place where wire models (client.models) and engine objects meet."""

from __future__ import annotations

import numpy as np

from client import models as wire
from engine.backtester import Report
from engine.genome import Genome, decode
from engine.miner import MiningResult, MiningSession
from engine.settings import Costs, MinerSettings
from schema.events import EventData
from schema.job import JobParameters
from serve_app.config import RuntimeConfig

MAX_CURVE_POINTS = 2_000


def resolve_costs(costs: wire.Costs | None, runtime: RuntimeConfig) -> wire.Costs:
    """Each cost left out takes the service's default (not the wire model's): for jobs and backtests alike."""
    given = costs.model_dump(exclude_unset=True) if costs else {}
    return runtime.default_costs.model_copy(update=given)


def resolve_spec(spec: wire.JobSpec, runtime: RuntimeConfig) -> wire.JobSpec:
    """Fill in the service's default costs (``resolve_costs``), so a stored job never changes meaning; the evaluator
    version it is pinned to is stored beside its spec (``JobInfo.evaluator_version``)."""
    return spec.model_copy(update={"costs": resolve_costs(spec.costs, runtime)})


def job_spec_schema(runtime: RuntimeConfig) -> dict:
    """The JSON schema of ``JobSpec`` as this service applies it: population and generations capped at its limits,
    costs defaulting to its configured ones. A form built from it offers each field with its real bounds and default
    (``schema.job``), where a copy of them would drift."""
    schema = wire.JobSpec.model_json_schema()
    fields = schema["properties"]
    for name, limit in (("population", runtime.max_population), ("generations", runtime.max_generations)):
        fields[name]["maximum"] = min(fields[name]["maximum"], limit)
    costs = schema["$defs"]["Costs"]["properties"]
    for name, value in runtime.default_costs.model_dump().items():
        costs[name]["default"] = value
    return schema


def settings_for(spec: wire.JobSpec) -> MinerSettings:
    """The engine's settings for a job: its parameters as given (one definition, ``schema.job.JobParameters``), the
    GA's own knobs at their defaults."""
    return MinerSettings(**spec.model_dump(include=set(JobParameters.model_fields)), costs=spec.costs or Costs())


def event_data(event: EventData) -> tuple[str, dict]:
    """(type, JSON payload) of an engine event, as the service stores it."""
    return event.type, event.model_dump(mode="json", exclude={"type"})


def best_so_far(session: MiningSession) -> wire.BestSoFar | None:
    """The first of the job's hall of fame (None while no strategy was scorable): what a cancel would keep."""
    famed = session.hall.best
    if famed is None:
        return None
    genome = decode(famed.row)
    return wire.BestSoFar(generation=famed.generation, fitness=famed.fitness, strategy=genome.describe(),
                          genome=genome.model_dump(mode="json"), metrics=session.summary(famed))


def curve_points(equity: np.ndarray, limit: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most ``limit`` points of an equity curve that keep its shape for a plot: the lowest and highest
    point of each of ``(limit - 4) / 2`` equal buckets, the first and last points, and the peak and trough of the
    deepest drawdown. So a drawdown computed from the points reaches exactly the depth of the full curve's (every
    kept point before the trough is at most the peak), where every n-th point alone missed it (0.15 % drawn for
    0.3 % reported)."""
    n = equity.size
    if n <= limit:
        return np.arange(n)
    running_peak = np.maximum.accumulate(equity)
    trough = int(np.argmax(1.0 - equity / running_peak))
    peak = int(np.argmax(equity[:trough + 1]))
    buckets = np.array_split(np.arange(n), (limit - 4) // 2)
    extremes = [i for b in buckets for i in (b[np.argmin(equity[b])], b[np.argmax(equity[b])])]
    return np.unique(np.array([0, n - 1, peak, trough, *extremes]))


def _curve(report: Report) -> wire.EquityCurve:
    index = curve_points(report.equity)
    return wire.EquityCurve(time=report.timestamps[index].tolist(), equity=report.equity[index].tolist())


def backtest(report: Report) -> wire.Backtest:
    return wire.Backtest(metrics=report.metrics, trades=[wire.Trade(**t) for t in report.trades],
                         equity=_curve(report))


def job_result(job_id: str, dataset: str, result: MiningResult, train: Report,
               holdout: Report | None) -> wire.JobResult:
    genome: Genome = result.best_genome
    return wire.JobResult(job_id=job_id, dataset=dataset, strategy=genome.describe(),
                          genome=genome.model_dump(mode="json"), fitness=result.fitness, train=backtest(train),
                          holdout=None if holdout is None else backtest(holdout),
                          evaluator_version=result.evaluator_version, seed=result.seed,
                          data_fingerprint=result.data_fingerprint, generations_run=result.generations_run,
                          history=result.history, folds=result.folds, profitable_folds=result.profitable_folds,
                          baselines=result.baselines, validation=result.validation, cancelled=result.cancelled,
                          hall_of_fame=[wire.HallOfFameEntry.model_validate(entry.model_dump(mode="json"))
                                        for entry in result.hall_of_fame])
