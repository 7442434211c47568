"""The mining loop: drive the GA, evaluate batches through a ``BatchBacktester``, validate, report progress.

A job is the GA search on the real training folds, then its validation: the random baseline and the same search
on shuffled copies of the training data (``engine.validation``). Runs whole jobs in-process with
``LocalBacktester`` or ``ThreadedBacktester``; the service drives the same ``MiningSession`` with its worker
pool. The result depends only on data, settings (seed included) and evaluator: batches are gathered by genome
index, so how the population is split, or where batches run, changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from engine import events as ev
from engine import layout as L
from engine.backtester import (
    BatchBacktester,
    LocalBacktester,
    ThreadedBacktester,
    Window,
    metrics_dict,
    split_windows,
    trade_returns,
)
from engine.baselines import budget, buy_and_hold_pct
from engine.candles import Candles
from engine.driver import Scored, Stopped, drive_generations, drive_search, run_blocking
from engine.evaluator import Evaluator, get_evaluator, search_ranked
from engine.ga import GeneticSearch
from engine.genome import Genome, decode
from engine.hall_of_fame import Famed, HallOfFame, HallOfFameEntry
from engine.islands import EpochOutcome, GenerationOutcome, IslandEpoch, run_epoch
from engine.scoring import combine_folds, fold_scores, fold_windows, job_fitness
from engine.settings import MinerSettings
from engine.validation import (
    ValidationTask,
    distinct_strategies,
    task_candles,
    task_search,
    validation_tasks,
    verdict,
)
from schema.events import EventData
from schema.research import Baselines, FoldResult, Validation


class MiningResult(BaseModel):
    best_genome: Genome | None
    fitness: float | None
    train_metrics: dict[str, float] | None
    holdout_metrics: dict[str, float] | None
    folds: list[FoldResult]
    profitable_folds: int
    baselines: Baselines
    validation: Validation
    evaluator_version: str
    seed: int
    data_fingerprint: str
    train_bars: int
    holdout_bars: int
    generations_run: int
    history: list[float]
    hall_of_fame: list[HallOfFameEntry]
    cancelled: bool = Field(False, description="the job ended early: the best of the generations it completed")
    settings: MinerSettings


class DataChanged(ValueError):
    """A job resumed on other candles than it started on (a data file replaced or appended to meanwhile)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SearchRun:
    """One search (GA or random) over one dataset's training folds, a generation at a time."""

    def __init__(self, search: GeneticSearch, folds: list[Window], evaluator: Evaluator, min_trades: int):
        self.search, self.folds, self.evaluator, self.min_trades = search, folds, evaluator, min_trades
        self.fold_bars = np.array([w.bars for w in folds], dtype=np.float64)

    @property
    def done(self) -> bool:
        return self.search.done

    @property
    def generation(self) -> int:
        return self.search.generation

    def population(self) -> np.ndarray:
        """The current generation's genomes, to be evaluated on every fold."""
        return self.search.ask()

    def fitness(self, fold_metrics: np.ndarray) -> np.ndarray:
        return job_fitness(self.evaluator, fold_metrics, self.min_trades)

    def tell(self, fold_metrics: np.ndarray | None, fitness: np.ndarray | None = None) -> np.ndarray:
        """Score a fully evaluated generation ((n, folds, metrics), row i for genome row i); breed the next.

        ``fitness`` may come precomputed (the service scores in its workers, with the same rule), and then the
        metrics may be None: a search run keeps only its best genome and fitness.
        """
        fitness = self.ranked(fold_metrics, fitness)
        self.search.tell(fitness)
        return fitness

    def ranked(self, fold_metrics: np.ndarray | None, fitness: np.ndarray | None) -> np.ndarray:
        """The fitness the search ranks by: computed from the metrics, or as given with non-finite values last."""
        return self.fitness(fold_metrics) if fitness is None else search_ranked(fitness)


class MiningSession(SearchRun):
    """The GA side of one job, its bookkeeping for the verdict, and its result; the caller decides where
    batches run. ``mine`` drives it in-process; the service's coordinator drives it with its worker pool."""

    def __init__(self, n_bars: int, data_fingerprint: str, settings: MinerSettings,
                 evaluator: Evaluator | None = None, resume_state: dict | None = None,
                 asked: Sequence[np.ndarray] | None = None):
        self.settings = settings
        self.data_fingerprint = data_fingerprint
        self.train, self.holdout = split_windows(n_bars, settings.holdout_fraction)
        state = resume_state or {}
        started_on = state.get("data_fingerprint", data_fingerprint)  # states from before it was kept: not known
        if started_on != data_fingerprint:
            raise DataChanged(f"the job's candles changed since it started (fingerprint {started_on} then, "
                              f"{data_fingerprint} now): resuming would not give the result it started towards; "
                              "put the file back, or submit the job again on the new candles")
        # the keys of every population evaluated, one array per generation: the search's memory of what it asked
        # for and the count of strategies tried are rebuilt from them; ``checkpoint`` carries them, ``state`` not
        self.asked: list[np.ndarray] = list(asked) if asked is not None else [
            np.asarray(chunk, dtype=np.uint64) for chunk in state.get("asked", [])]
        super().__init__(GeneticSearch(settings, state=state.get("search"), asked=self.asked),
                         fold_windows(self.train, settings.folds), evaluator or get_evaluator(), settings.min_trades)
        self.hall = HallOfFame(settings.hall_of_fame, state.get("hall_of_fame"))
        self.validated: dict[str, dict] = dict(state.get("validated", {}))  # task key -> best fitness and row

    def started(self) -> ev.JobStarted:
        s = self.settings
        return ev.JobStarted(population=s.population, generations=s.generations, train_bars=self.train.bars,
                             holdout_bars=self.holdout.bars if self.holdout else 0,
                             data_fingerprint=self.data_fingerprint, evaluator_version=self.evaluator.version,
                             folds=s.folds, permutations=s.permutations)

    def tell_generation(self, fold_metrics: np.ndarray, fitness: np.ndarray | None = None) -> ev.GenerationBest:
        """``tell`` for the real search's whole generation, told here; returns the generation's event."""
        generation = self.search.generation
        outcomes = self.search.tell(self.ranked(fold_metrics, fitness), fold_metrics, self.metrics_kept)
        return self._close_generation(outcomes, generation)

    @property
    def metrics_kept(self) -> int:
        """How many of an island's fittest distinct genomes need every metric for their generation to be told (its
        best, and the hall of fame); of the others, only their fitness is read."""
        return self.hall.size

    def island_epoch(self, index: int) -> IslandEpoch:
        """Island ``index``'s generations up to the next migration, to be run anywhere (``run_epoch``); the metrics of
        genomes that can no longer enter the hall of fame stay where they were computed."""
        return self.search.island_epoch(index, self.hall.floor)

    def next_island_epoch(self, epoch: IslandEpoch, outcome: EpochOutcome,
                          sender: EpochOutcome) -> IslandEpoch | None:
        """An island's next epoch as soon as it and its ring sender are back (``GeneticSearch.next_island_epoch``)."""
        return self.search.next_island_epoch(epoch, outcome, sender, self.hall.floor)

    def run_epoch(self, epoch: IslandEpoch, evaluate: Callable[[np.ndarray], np.ndarray]) -> EpochOutcome:
        """An island's epoch run here, ``evaluate`` giving each generation's fold metrics: as a worker runs it."""
        return run_epoch(epoch, lambda rows: (metrics := evaluate(rows), self.fitness(metrics)), self.metrics_kept)

    def tell_epoch(self, outcomes: Sequence[EpochOutcome]) -> list[ev.GenerationBest]:
        """Every island's outcome of the epoch under way (in island order); each of its generations' event."""
        start = self.search.generation
        by_generation = self.search.tell_epoch(outcomes)
        return [self._close_generation(generation, start + i) for i, generation in enumerate(by_generation)]

    def _close_generation(self, outcomes: Sequence[GenerationOutcome], generation: int) -> ev.GenerationBest:
        """A told generation's distinct strategies are logged and its best enter the hall of fame; its event, with the
        job's best after this generation (an epoch is told whole, so the search's own best may be later ones')."""
        self.asked.append(np.concatenate([outcome.keys for outcome in outcomes]))
        rows = np.concatenate([outcome.rows for outcome in outcomes])
        fitness = np.concatenate([outcome.fitness[outcome.kept] for outcome in outcomes])
        metrics = np.concatenate([outcome.metrics for outcome in outcomes])
        self.hall.add(rows, fitness, metrics, generation)
        top = int(np.argmax(fitness))
        summary = combine_folds(metrics[top:top + 1], self.fold_bars)[0]
        return ev.GenerationBest(generation=generation, fitness=float(fitness[top]),
                                 best_fitness_so_far=self.search.history[generation], genome=decode(rows[top]),
                                 metrics=metrics_dict(summary))

    def summary(self, famed: Famed) -> dict[str, float]:
        """A famed strategy's training folds combined into one set of metrics, as generation events report them."""
        return metrics_dict(combine_folds(famed.fold_metrics[None], self.fold_bars)[0])

    # ---- validation ----------------------------------------------------------------------------------------
    def pending_tasks(self) -> list[ValidationTask]:
        """Validation searches not yet run to the end (all of them before the GA finishes)."""
        return [t for t in validation_tasks(self.settings) if t.key not in self.validated]

    def task_run(self, task: ValidationTask) -> SearchRun:
        """A fresh run of one validation search (a resumed job reruns unfinished ones from the start)."""
        return SearchRun(task_search(task, self.settings), self.folds, self.evaluator, self.min_trades)

    def task_data(self, task: ValidationTask, candles: Candles) -> Candles:
        return task_candles(task, candles, self.train, self.settings.seed)

    def record(self, task: ValidationTask, run: SearchRun) -> ev.ValidationSearchFinished:
        best = run.search.best_row
        self.validated[task.key] = {"fitness": run.search.best_fitness,
                                    "row": None if best is None else best.tolist()}
        total = len(validation_tasks(self.settings))
        return ev.ValidationSearchFinished(kind=task.kind, index=task.index, best_fitness=run.search.best_fitness,
                                           done=len(self.validated), total=total)

    def state(self) -> dict:
        """The job's state after the last generation or validation search, without the asked keys (0.37 MB at 1,000
        genomes, whatever the generation): a store appends the keys of the generations since its last checkpoint."""
        return {"search": self.search.state(), "validated": dict(self.validated),
                "hall_of_fame": self.hall.state(), "data_fingerprint": self.data_fingerprint}

    def checkpoint(self) -> dict:
        """``state`` with every generation's asked keys: all a resume needs (``engine.state_codec`` makes it bytes)."""
        return {**self.state(), "asked": list(self.asked)}

    # ---- result --------------------------------------------------------------------------------------------
    def result(self, tester: LocalBacktester, cancelled: bool = False) -> MiningResult:
        """The best genome so far with its metrics, folds, baselines and verdict (a few backtests)."""
        s, best = self.settings, self.search.best_row
        candles = tester.candles
        train_metrics = holdout_metrics = None
        folds: list[FoldResult] = []
        returns = np.empty(0)
        trades = 0
        if best is not None:
            train_metrics = metrics_dict(tester.evaluate(best[None, :], self.train)[0])
            if self.holdout is not None:
                holdout_metrics = metrics_dict(tester.evaluate(best[None, :], self.holdout)[0])
            folds, returns = self._folds(tester, best)
            trades = sum(int(f.metrics["trades"]) for f in folds)
        random = self.validated.get("random")
        baselines = Baselines(
            buy_and_hold_train_pct=buy_and_hold_pct(candles, self.train, s.costs),
            buy_and_hold_holdout_pct=buy_and_hold_pct(candles, self.holdout, s.costs) if self.holdout else None,
            budget=budget(s), random_best_fitness=random["fitness"] if random else None,
            random_best_strategy=decode(np.array(random["row"])).describe() if random and random["row"] else None)
        copies = [self.validated[t.key]["fitness"] for t in validation_tasks(s)
                  if t.kind == "shuffled" and t.key in self.validated]
        complete = not cancelled and not self.pending_tasks()
        validation = verdict(
            permutations=s.permutations, best_fitness=None if best is None else self.search.best_fitness,
            copies_best=copies if complete else None, strategies_tried=distinct_strategies(self.asked),
            meets_min_trades=trades >= s.min_trades, min_trades=s.min_trades,
            training_pnl=sum(f.metrics["net_pnl"] for f in folds), trade_returns=returns)
        return MiningResult(
            best_genome=None if best is None else decode(best),
            fitness=None if best is None else self.search.best_fitness,
            train_metrics=train_metrics, holdout_metrics=holdout_metrics, folds=folds,
            profitable_folds=sum(1 for f in folds if f.metrics["net_pnl"] > 0), baselines=baselines,
            validation=validation, evaluator_version=self.evaluator.version, seed=s.seed,
            data_fingerprint=self.data_fingerprint, train_bars=self.train.bars,
            holdout_bars=self.holdout.bars if self.holdout else 0, generations_run=self.search.generation,
            history=list(self.search.history), hall_of_fame=self._hall_of_fame(tester), cancelled=cancelled,
            settings=s,
        )

    def _hall_of_fame(self, tester: LocalBacktester) -> list[HallOfFameEntry]:
        """The hall's strategies, best first, each backtested on the whole training window and on the holdout."""
        if not self.hall.entries:
            return []
        rows = np.stack([famed.row for famed in self.hall.entries])
        train = tester.evaluate(rows, self.train)
        holdout = None if self.holdout is None else tester.evaluate(rows, self.holdout)
        entries = []
        for i, famed in enumerate(self.hall.entries):
            genome = decode(famed.row)
            entries.append(HallOfFameEntry(
                fitness=famed.fitness, generation=famed.generation, genome=genome, strategy=genome.describe(),
                train_metrics=metrics_dict(train[i]),
                holdout_metrics=None if holdout is None else metrics_dict(holdout[i])))
        return entries

    def _folds(self, tester: LocalBacktester, best: np.ndarray) -> tuple[list[FoldResult], np.ndarray]:
        """Each fold's report of the best genome, and its per-trade returns over all folds."""
        ts, cash = tester.candles.timestamp, self.settings.costs.initial_cash
        folds, returns = [], []
        for window in self.folds:
            report = tester.report(best, window)
            row = np.array([[report.metrics[name] for name in L.METRICS]])
            score = float(fold_scores(self.evaluator, row[:, None, :])[0, 0])
            folds.append(FoldResult(start_time=int(ts[window.start]), end_time=int(ts[window.end - 1]),
                                    bars=window.bars, score=score, metrics=report.metrics))
            returns.append(trade_returns(report.trades, cash))
        return folds, np.concatenate(returns) if returns else np.empty(0)


# ---- in-process driver ------------------------------------------------------------------------------------------
def mine(
    candles: Candles,
    settings: MinerSettings,
    evaluator: Evaluator | None = None,
    threads: int = 1,
    on_event: Callable[[EventData], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_state: dict | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
) -> MiningResult:
    """Mine and validate in this process (``threads`` backtest threads) and return the best genome found.

    ``should_stop`` is polled between batches and between generations (cancellation: the events end with
    ``Cancelled`` and the result is the best so far, unvalidated); ``on_checkpoint`` receives the job's state after
    every generation and every validation search, and ``resume_state`` continues from such a state.
    """
    session = MiningSession(len(candles), candles.fingerprint, settings, evaluator, resume_state)
    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    tester = _backtester(candles, settings, threads)
    try:
        emit(session.started())
        try:
            run_blocking(drive_generations(session, _InProcess(session, tester, emit, stop, on_checkpoint)))
            tasks = session.pending_tasks()
            if tasks:
                emit(ev.ValidationStarted(searches=len(validation_tasks(settings)),
                                          permutations=settings.permutations))
            for task in tasks:
                data = session.task_data(task, candles)
                task_tester = tester if data is candles else _backtester(data, settings, threads)
                try:
                    run = session.task_run(task)
                    if not run_search(run, task_tester, settings.batch_size, stop):
                        raise Stopped
                finally:
                    if task_tester is not tester:
                        _close(task_tester)
                emit(session.record(task, run))
                if on_checkpoint is not None:
                    on_checkpoint(session.checkpoint())
        except Stopped:
            emit(ev.Cancelled(generation=session.generation))
            return session.result(_local(tester), cancelled=True)
        final = session.result(_local(tester))
    finally:
        _close(tester)
    emit(ev.Finished(best_fitness=session.search.best_fitness, generations_run=session.generation))
    return final


class _InProcess:
    """``drive_generations``' hooks for a job mined in this process: islands on ``tester``, events to ``emit``."""

    def __init__(self, session: MiningSession, tester: BatchBacktester, emit: Callable[[EventData], None],
                 stop: Callable[[], bool], on_checkpoint: Callable[[dict], None] | None):
        self.session, self.tester, self.emit, self.stopping, self.on_checkpoint = (session, tester, emit, stop,
                                                                                    on_checkpoint)

    async def evolve(self, epoch: IslandEpoch) -> EpochOutcome:
        # runs to its end once started (nothing here awaits): the islands of an epoch run one after the other
        session = self.session
        return session.run_epoch(epoch, lambda rows: _scored(self.tester, rows, session.folds,
                                                             session.settings.batch_size, self.stopping)[0])

    def announce(self, generation: int) -> None:
        self.emit(ev.GenerationStarted(generation=generation))

    def islands_done(self, generation: int, evaluated: int) -> None:
        self.emit(ev.BatchEvaluated(generation=generation, evaluated=evaluated,
                                    total=self.session.settings.population))

    async def record(self, bests: list[ev.GenerationBest], evaluated: int) -> None:
        # never awaits: the next epoch, already sent, starts only when this returns, so its events follow
        for best in bests:
            if best is not bests[0]:
                self.emit(ev.GenerationStarted(generation=best.generation))
            self.emit(best)
        if self.on_checkpoint is not None:  # building one costs milliseconds: only when asked for
            self.on_checkpoint(self.session.checkpoint())


def _backtester(candles: Candles, settings: MinerSettings, threads: int) -> BatchBacktester:
    return ThreadedBacktester(candles, settings.costs, threads) if threads > 1 else LocalBacktester(candles,
                                                                                                    settings.costs)


def _local(tester: BatchBacktester) -> LocalBacktester:
    return tester.local if isinstance(tester, ThreadedBacktester) else tester


def _close(tester: BatchBacktester) -> None:
    if isinstance(tester, ThreadedBacktester):
        tester.close()


def run_search(run: SearchRun, tester: BatchBacktester, batch_size: int, should_stop: Callable[[], bool]) -> bool:
    """Run a validation search to its end in this process; False if ``should_stop`` said so between batches."""

    async def evaluate(population: np.ndarray) -> Scored:
        return _scored(tester, population, run.folds, batch_size, should_stop)

    try:
        run_blocking(drive_search(run, evaluate, should_stop))
    except Stopped:
        return False
    return True


def _scored(tester: BatchBacktester, population: np.ndarray, folds: list[Window], batch_size: int,
            should_stop: Callable[[], bool]) -> Scored:
    """``evaluate_folds`` as the driver takes it: (metrics, no fitness yet), or ``Stopped``."""
    metrics = evaluate_folds(tester, population, folds, batch_size, should_stop, lambda done, total: None)
    if metrics is None:
        raise Stopped
    return metrics, None


def evaluate_folds(backtester: BatchBacktester, population: np.ndarray, folds: list[Window], batch_size: int,
                   should_stop: Callable[[], bool], on_batch: Callable[[int, int], None]) -> np.ndarray | None:
    """Metrics (n, folds, metrics) for every row, batch by batch; None if ``should_stop`` said so between batches."""
    metrics = np.empty((population.shape[0], len(folds), L.N_METRICS))
    for start in range(0, population.shape[0], batch_size):
        if should_stop():
            return None
        stop = min(start + batch_size, population.shape[0])
        metrics[start:stop] = backtester.evaluate_windows(population[start:stop], folds)
        on_batch(stop, population.shape[0])
    return metrics
