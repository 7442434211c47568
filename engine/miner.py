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
from engine.evaluator import Evaluator, get_evaluator
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


class MiningSession:
    """The GA side of one job, a generation at a time; the caller decides where batches run.

    ``mine`` drives it in-process; the service's coordinator drives it with its worker pool. Both
    get identical results because everything random lives in the session's seeded search.
    """

    def __init__(self, n_bars: int, data_fingerprint: str, settings: MinerSettings,
                 evaluator: Evaluator | None = None, resume_state: dict | None = None):
        self.settings = settings
        self.evaluator = evaluator or get_evaluator()
        self.data_fingerprint = data_fingerprint
        self.train, self.holdout = split_windows(n_bars, settings.holdout_fraction)
        self.search = GeneticSearch(settings, state=resume_state)

    @property
    def done(self) -> bool:
        return self.search.done

    @property
    def generation(self) -> int:
        return self.search.generation

    def started(self) -> ev.JobStarted:
        s = self.settings
        return ev.JobStarted(population=s.population, generations=s.generations, train_bars=self.train.bars,
                             holdout_bars=self.holdout.bars if self.holdout else 0,
                             data_fingerprint=self.data_fingerprint, evaluator_version=self.evaluator.version)

    def population(self) -> np.ndarray:
        """The current generation's genomes, to be evaluated on ``self.train``."""
        return self.search.ask()

    def tell(self, population: np.ndarray, metrics: np.ndarray, fitness: np.ndarray | None = None
             ) -> ev.GenerationBest:
        """Score a fully evaluated generation (metrics row i for genome row i) and breed the next.

        ``fitness`` may come precomputed (the service scores in its workers, with this session's evaluator).
        """
        generation = self.search.generation
        fitness = self.evaluator.fitness(metrics) if fitness is None else np.where(
            np.isfinite(fitness), fitness, -np.inf)
        self.search.tell(fitness)
        top = int(np.argmax(fitness))
        return ev.GenerationBest(generation=generation, fitness=float(fitness[top]),
                                 best_fitness_so_far=self.search.best_fitness, genome=decode(population[top]),
                                 metrics=metrics_dict(metrics[top]))

    def checkpoint(self) -> dict:
        return self.search.state()

    def result(self, evaluate: Callable[[np.ndarray, Window], np.ndarray], cancelled: bool = False) -> MiningResult:
        """The best genome so far with its train and holdout metrics (``evaluate`` runs two backtests)."""
        best = self.search.best_row
        train_metrics = holdout_metrics = None
        if best is not None:
            train_metrics = metrics_dict(evaluate(best[None, :], self.train)[0])
            if self.holdout is not None:
                holdout_metrics = metrics_dict(evaluate(best[None, :], self.holdout)[0])
        s = self.settings
        return MiningResult(
            best_genome=None if best is None else decode(best),
            fitness=None if best is None else self.search.best_fitness,
            train_metrics=train_metrics, holdout_metrics=holdout_metrics,
            evaluator_version=self.evaluator.version, seed=s.seed, data_fingerprint=self.data_fingerprint,
            train_bars=self.train.bars, holdout_bars=self.holdout.bars if self.holdout else 0,
            generations_run=self.search.generation, history=list(self.search.history), cancelled=cancelled,
            settings=s,
        )


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
    """Mine ``settings.generations`` generations in this process and return the best genome found.

    ``should_stop`` is polled between batches (cancellation); ``on_checkpoint`` receives the GA
    state after every generation and ``resume_state`` continues from such a state.
    """
    session = MiningSession(len(candles), candles.fingerprint, settings, evaluator, resume_state)
    backtester = backtester or LocalBacktester(candles, settings.costs)
    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    emit(session.started())
    while not session.done:
        generation = session.generation
        emit(ev.GenerationStarted(generation=generation))
        population = session.population()
        metrics = evaluate_population(backtester, population, session.train, settings.batch_size, stop,
                                      partial(_emit_batch, emit, generation))
        if metrics is None:
            emit(ev.Cancelled(generation=generation))
            return session.result(backtester.evaluate, cancelled=True)
        emit(session.tell(population, metrics))
        if on_checkpoint is not None:
            on_checkpoint(session.checkpoint())
    final = session.result(backtester.evaluate)
    emit(ev.Finished(best_fitness=session.search.best_fitness, generations_run=session.generation))
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
