"""The one place where wire models (client.models) and engine objects meet."""

from __future__ import annotations

import numpy as np

from client import models as wire
from engine.backtester import Report
from engine.genome import Genome, decode
from engine.miner import MiningResult, MiningSession
from engine.settings import Costs, MinerSettings
from schema.events import EventData
from serve_app.config import RuntimeConfig

MAX_CURVE_POINTS = 2_000


def resolve_spec(spec: wire.JobSpec, runtime: RuntimeConfig, evaluator_version: str) -> wire.JobSpec:
    """Fill in the service defaults (each cost left out takes the service's) and pin the evaluator version, so a
    stored job never changes meaning."""
    given = spec.costs.model_dump(exclude_unset=True) if spec.costs else {}
    return spec.model_copy(update={"costs": runtime.default_costs.model_copy(update=given),
                                   "evaluator": evaluator_version})


def settings_for(spec: wire.JobSpec) -> MinerSettings:
    return MinerSettings(population=spec.population, generations=spec.generations, risk=spec.risk, seed=spec.seed,
                         holdout_fraction=spec.holdout_fraction, folds=spec.folds, min_trades=spec.min_trades,
                         permutations=spec.permutations, islands=spec.islands,
                         hall_of_fame=spec.hall_of_fame, costs=spec.costs or Costs())


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


def _curve(report: Report) -> wire.EquityCurve:
    step = max(1, int(np.ceil(report.equity.size / MAX_CURVE_POINTS)))
    index = np.unique(np.concatenate([np.arange(0, report.equity.size, step), [report.equity.size - 1]]))
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
