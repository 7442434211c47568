"""The mining loop: drive the GA, evaluate batches through a ``BatchBacktester``, report progress.

Runs whole jobs in-process with ``LocalBacktester``; the service passes its worker pool instead.
The result depends only on data, settings (seed included) and evaluator: batches are gathered by
genome index, so how the population is split, or where batches run, changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from pydantic import BaseModel

from engine import events as ev
from engine.backtester import BatchBacktester, LocalBacktester, Window, metrics_dict, split_windows
from engine.candles import Candles
from engine.evaluator import BalancedEvaluator, Evaluator
from engine.ga import GeneticSearch
from engine.genome import Genome, decode
from engine.layout import N_METRICS
from engine.settings import MinerSettings


class MiningResult(BaseModel):
    best_genome: Genome | None
    fitness: float | None
    train_metrics: dict[str, float] | None
    holdout_metrics: dict[str, float] | None
    evaluator_version: str
    seed: int
    data_fingerprint: str
    train_bars: int
    holdout_bars: int
    generations_run: int
    history: list[float]
    cancelled: bool = False
    settings: MinerSettings


def mine(
    candles: Candles,
    settings: MinerSettings,
    evaluator: Evaluator | None = None,
    backtester: BatchBacktester | None = None,
    on_event: Callable[[ev._Event], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_state: dict | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
) -> MiningResult:
    """Mine ``settings.generations`` generations and return the best genome found.

    ``should_stop`` is polled between batches (cancellation); ``on_checkpoint`` receives the GA
    state after every generation and ``resume_state`` continues from such a state.
    """
    evaluator = evaluator or BalancedEvaluator()
    backtester = backtester or LocalBacktester(candles, settings.costs)
    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    train, holdout = split_windows(len(candles), settings.holdout_fraction)
    search = GeneticSearch(settings, state=resume_state)

    def result(cancelled: bool) -> MiningResult:
        best = search.best_row
        train_metrics = holdout_metrics = None
        if best is not None:
            train_metrics = metrics_dict(backtester.evaluate(best[None, :], train)[0])
            if holdout is not None:
                holdout_metrics = metrics_dict(backtester.evaluate(best[None, :], holdout)[0])
        return MiningResult(
            best_genome=None if best is None else decode(best),
            fitness=None if best is None else search.best_fitness,
            train_metrics=train_metrics, holdout_metrics=holdout_metrics,
            evaluator_version=evaluator.version, seed=settings.seed, data_fingerprint=candles.fingerprint,
            train_bars=train.bars, holdout_bars=holdout.bars if holdout else 0,
            generations_run=search.generation, history=list(search.history), cancelled=cancelled,
            settings=settings,
        )

    emit(ev.JobStarted(population=settings.population, generations=settings.generations,
                       train_bars=train.bars, holdout_bars=holdout.bars if holdout else 0,
                       data_fingerprint=candles.fingerprint, evaluator_version=evaluator.version))
    while not search.done:
        generation = search.generation
        emit(ev.GenerationStarted(generation=generation))
        population = search.ask()
        metrics = evaluate_population(backtester, population, train, settings.batch_size, stop,
                                      partial(_emit_batch, emit, generation))
        if metrics is None:
            emit(ev.Cancelled(generation=generation))
            return result(cancelled=True)
        fitness = evaluator.fitness(metrics)
        search.tell(fitness)
        top = int(np.argmax(fitness))
        emit(ev.GenerationBest(generation=generation, fitness=float(fitness[top]),
                               best_fitness_so_far=search.best_fitness, genome=decode(population[top]),
                               metrics=metrics_dict(metrics[top])))
        if on_checkpoint is not None:
            on_checkpoint(search.state())
    final = result(cancelled=False)
    emit(ev.Finished(best_fitness=search.best_fitness, generations_run=search.generation))
    return final


def _emit_batch(emit: Callable, generation: int, done: int, total: int) -> None:
    emit(ev.BatchEvaluated(generation=generation, evaluated=done, total=total))


def evaluate_population(backtester: BatchBacktester, population: np.ndarray, window: Window, batch_size: int,
                        should_stop: Callable[[], bool], on_batch: Callable[[int, int], None]) -> np.ndarray | None:
    """Metrics for every row, batch by batch; None if ``should_stop`` said so between batches."""
    metrics = np.empty((population.shape[0], N_METRICS))
    for start in range(0, population.shape[0], batch_size):
        if should_stop():
            return None
        stop = min(start + batch_size, population.shape[0])
        metrics[start:stop] = backtester.evaluate(population[start:stop], window)
        on_batch(stop, population.shape[0])
    return metrics
