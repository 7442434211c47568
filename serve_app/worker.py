"""BacktestWorker: a long-lived actor with warm Numba kernels, one per CPU of the cluster.

It fetches each dataset once (by ``ObjectRef``: candles and the coordinator's indicator tables come out
of the node's object store without a copy), and evaluates one batch of encoded genomes per call. An
indicator outside the shared tables is computed here, on a private copy. Genomes and metrics are small;
the candles never travel again. Built-in evaluators score here; pushed ones, and every trial, only in this
worker's sandbox process (``serve_app.sandbox``), under the limits each call carries.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import ray

from engine.backtester import LocalBacktester, Window
from engine.brief import BriefMetrics
from engine.evaluator import Evaluator, EvaluatorError
from engine.features import FeatureStore
from engine.islands import EpochOutcome, IslandEpoch, ScoreRows, memory_after, run_epoch
from engine.scoring import job_fitness
from engine.settings import RISK_PRESETS, Costs, MinerSettings, RiskLevel
from engine.space import GenomeSpace
from engine.synthetic import synthetic_candles
from serve_app import mapping
from serve_app.config import EvaluatorLimits
from serve_app.gc_pauses import settle_startup_objects
from serve_app.sandbox import Sandbox, SandboxedEvaluator
from serve_app.versions import runtime_versions

MAX_CACHED_DATASETS = 4
MAX_CACHED_SCORINGS = 16  # a job's scoring, and one per validation search under way
MAX_CACHED_MEMORIES = 64  # islands' memories of keys (up to 128 KB each): every island of a few jobs at once


class UnknownScoring(Exception):
    """A batch named a scoring by its key that this worker does not hold (never sent, or forgotten): send it whole."""


class UnknownMemory(Exception):
    """An island's epoch came without its memory of keys, which this worker does not hold (it ran the island's last
    epoch elsewhere, or forgot it): send the epoch whole."""


MemoryKey = tuple[str, int, int, int]  # (job, search stream, island, first generation of the epoch it is for)


def memory_key(job: str, epoch: IslandEpoch, generation: int) -> MemoryKey:
    """The key of the memory of ``epoch``'s island for its epoch starting at ``generation``."""
    return job, epoch.stream, epoch.index, generation


def sample_backtests() -> tuple[np.ndarray, float]:
    """Backtest 64 random genomes on synthetic candles: compiles (or loads from Numba's cache) every kernel
    a batch can hit, and the metrics are the sample a would-be evaluator is tried on.

    Returns (metrics, seconds spent).
    """
    started = time.perf_counter()
    candles = synthetic_candles(3_000, seed=1)
    space = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], MinerSettings().period_menu)
    genomes = space.random_population(64, np.random.default_rng(1))
    tester = LocalBacktester(candles, Costs())
    metrics = tester.evaluate(genomes, Window(0, len(candles)))
    tester.report(genomes[0], Window(0, len(candles)))
    return metrics, time.perf_counter() - started


@dataclass(frozen=True)
class Scoring:
    """What a worker scores a batch of genomes against, besides the genomes and the windows: the dataset, the costs,
    the evaluator version (under its limits for pushed code) and min_trades. Refs come boxed in one-item lists so
    Ray does not fetch them with every call: a worker fetches a dataset or an evaluator the first time it sees its id.

    A worker keeps the scorings it has used, by ``key`` (new for every scoring, ``dataclasses.replace`` included), and
    later batches name theirs by key alone: an argument holding object refs costs Ray's reference counting on both
    sides of every call (about 0.5 ms of CPU each, measured), a string nothing.
    """

    dataset_id: str
    dataset: list  # [ObjectRef of (candles, indicator tables)]
    costs: Costs
    evaluator_version: str
    evaluator: list  # [ObjectRef of (name, source, params, trusted)]
    limits: EvaluatorLimits
    min_trades: int
    key: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "key", uuid.uuid4().hex)


@ray.remote(num_cpus=1)
class BacktestWorker:
    def __init__(self, label: str | None = None):
        self.label = label
        self._sample_metrics, self.warm_s = sample_backtests()
        self._features: OrderedDict[str, FeatureStore] = OrderedDict()
        self._sandbox = Sandbox()  # pushed evaluators run there, under limits; built-ins score here
        self._evaluators: dict[str, Evaluator | SandboxedEvaluator] = {}  # by version id: loaded on first use
        self._scorings: OrderedDict[str, Scoring] = OrderedDict()  # by key, without their refs (used already)
        self._memories: OrderedDict[MemoryKey, list[np.ndarray]] = OrderedDict()  # for islands' next epochs
        settle_startup_objects()

    def info(self) -> dict:
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(), "label": self.label,
                "warm_s": self.warm_s, "datasets": list(self._features), "versions": runtime_versions()}

    def memory(self) -> dict:
        """Resident memory, and how much of it is candles owned privately (0: object-store views)."""
        import psutil

        info = psutil.Process().memory_full_info()
        owned = sum(column.nbytes for store in self._features.values() for column in
                    (store.candles.open, store.candles.high, store.candles.low, store.candles.close,
                     store.candles.volume, store.candles.timestamp) if column.flags.owndata)
        private_tables = sum(store.matrix.nbytes for store in self._features.values() if store.owns_rows)
        return {"pid": os.getpid(), "rss": info.rss, "uss": info.uss, "candles_private_bytes": owned,
                "indicator_private_bytes": private_tables}

    def _store(self, dataset_id: str, boxed_ref: list) -> FeatureStore:
        store = self._features.get(dataset_id)
        if store is None:
            candles, tables = ray.get(boxed_ref[0])  # zero-copy views of the node's object store
            store = self._features[dataset_id] = FeatureStore(candles, shared=tables)
            while len(self._features) > MAX_CACHED_DATASETS:
                self._features.popitem(last=False)
        self._features.move_to_end(dataset_id)
        return store

    def _evaluator(self, version: str, boxed_ref: list) -> Evaluator | SandboxedEvaluator:
        if version not in self._evaluators:
            name, source, params, trusted = ray.get(boxed_ref[0])
            self._evaluators[version] = (Evaluator(name, source, params) if trusted else
                                         SandboxedEvaluator(self._sandbox, name, source, params))
        return self._evaluators[version]

    def _fitness(self, scoring: Scoring, metrics: np.ndarray) -> np.ndarray:
        """The batch's fitness; a failure or a passed limit is raised naming the version (it fails the job)."""
        version = scoring.evaluator_version
        try:
            with self._sandbox.limited(scoring.limits):
                return job_fitness(self._evaluator(version, scoring.evaluator), metrics, scoring.min_trades)
        except EvaluatorError as exc:
            raise EvaluatorError(f"evaluator {version} failed on a batch of {len(metrics)} genomes: {exc}") from None

    def evaluate(self, scoring: Scoring | str, genomes: np.ndarray, windows: list[tuple[int, int]],
                 keep: int) -> tuple[BriefMetrics | None, np.ndarray, float]:
        """(metrics, fitness, seconds backtesting and scoring) for one batch on every fold window (one kernel call: the
        batch's rules are evaluated once for all of them), scored as ``scoring`` says with the engine's fold and
        min_trades rules. The metrics come as a search reads them (``BriefMetrics``, whole rows for the ``keep``
        fittest distinct genomes), None if ``keep`` is 0: a search that keeps only its best needs the fitness alone.
        ``scoring`` may be the key of one this worker has used (``UnknownScoring`` if it no longer holds it, its
        dataset or its evaluator)."""
        key, scoring, score = self._scorer(scoring, windows)
        started = time.perf_counter()  # an indicator missing from the shared tables is computed in the timed part
        metrics, fitness = score(genomes)
        brief = BriefMetrics.of(genomes, metrics, fitness, keep) if keep else None
        seconds = time.perf_counter() - started
        self._remember(key, scoring)
        return brief, fitness, seconds

    def evolve(self, scoring: Scoring | str, epochs: list[IslandEpoch], windows: list[tuple[int, int]],
               keep: int, job: str) -> tuple[list[EpochOutcome], float]:
        """(outcomes, seconds backtesting, scoring and breeding) of islands' epochs (``engine.islands.run_epoch``), one
        after the other: each of their generations backtested on every fold window, scored as ``scoring`` says and bred
        here, so the coordinator sends one call per island and epoch, or one for several islands when more are waiting
        than there are workers (Ray's own work around a call is 1-2 ms of these cores). An outcome is what ``run_epoch``
        gives in any process: the island's state after the epoch and, for each generation, every genome's key and
        fitness and the whole metrics of its ``keep`` fittest distinct genomes.

        The worker keeps each island's memory of keys for its next epoch (``memory_after``, under ``job``'s name),
        which may then come without it (``seen`` None; ``UnknownMemory``, before any epoch runs, if this worker does
        not hold one): past 50 generations an island remembers up to 128 KB of keys."""
        key, scoring, score = self._scorer(scoring, windows)
        missing = [e.index for e in epochs if e.seen is None and memory_key(job, e, e.start) not in self._memories]
        if missing:
            raise UnknownMemory(f"islands {missing} of job {job}")
        # every memory taken before any epoch runs and keeps its own memory for the next (which could evict them)
        epochs = [e if e.seen is not None else
                  dataclasses.replace(e, seen=self._memories.pop(memory_key(job, e, e.start))) for e in epochs]
        started = time.perf_counter()
        outcomes = []
        for epoch in epochs:
            outcomes.append(run_epoch(epoch, score, keep))
            if epoch.continues:
                self._memories[memory_key(job, epoch, epoch.stop)] = memory_after(epoch.seen, outcomes[-1], True)
                while len(self._memories) > MAX_CACHED_MEMORIES:
                    self._memories.popitem(last=False)
        seconds = time.perf_counter() - started
        self._remember(key, scoring)
        return outcomes, seconds

    def _scorer(self, scoring: Scoring | str, windows: list[tuple[int, int]]) -> tuple[str, Scoring, ScoreRows]:
        """The key and scoring a call names (``UnknownScoring`` for a key this worker no longer holds; the kept copy
        has a key of its own) and what backtests rows on every fold window and scores them with it: (fold metrics,
        fitness)."""
        key = scoring if isinstance(scoring, str) else scoring.key
        scoring = self._known_scoring(key) if isinstance(scoring, str) else scoring
        store = self._store(scoring.dataset_id, scoring.dataset)
        tester = LocalBacktester(store.candles, scoring.costs, features=store)
        folds = [Window(start, end) for start, end in windows]

        def score(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            metrics = tester.evaluate_windows(rows, folds)
            return metrics, self._fitness(scoring, metrics)

        return key, scoring, score

    def _remember(self, key: str, scoring: Scoring) -> None:
        """Keep a scoring that has served a batch, without its refs (they would keep its dataset in the object store
        after ``_features`` forgot it): its dataset and evaluator are loaded, which a key-only batch needs."""
        if key in self._scorings:
            self._scorings.move_to_end(key)
            return
        self._scorings[key] = dataclasses.replace(scoring, dataset=[], evaluator=[])
        while len(self._scorings) > MAX_CACHED_SCORINGS:
            self._scorings.popitem(last=False)

    def _known_scoring(self, key: str) -> Scoring:
        scoring = self._scorings.get(key)
        if scoring is None or scoring.dataset_id not in self._features or scoring.evaluator_version not in \
                self._evaluators:
            raise UnknownScoring(key)
        return scoring

    def report(self, dataset_id: str, dataset: list, costs: Costs, genome: np.ndarray, start: int, end: int) -> dict:
        """One genome's full backtest on bars [start, end) of a dataset (``POST /v1/backtests``): metrics, trades and
        the equity curve thinned as a job result's (``mapping.backtest``), as JSON."""
        store = self._store(dataset_id, dataset)
        report = LocalBacktester(store.candles, costs, features=store).report(genome, Window(start, end))
        return mapping.backtest(report).model_dump(mode="json")

    def trial(self, name: str, source: str, params: dict, limits: EvaluatorLimits) -> dict:
        """Load a would-be evaluator in the sandbox and score a sample of real backtests with it, all within one
        batch's limits; report, never raise."""
        started = time.perf_counter()
        try:
            candidate = SandboxedEvaluator(self._sandbox, name, source, params)
            with self._sandbox.limited(limits):
                candidate.check(self._sample_metrics)
                candidate.check(np.zeros((2, self._sample_metrics.shape[1])))  # genomes that never trade
        except EvaluatorError as exc:
            return {"ok": False, "error": str(exc), "line": exc.line}
        return {"ok": True, "version": candidate.version, "seconds": time.perf_counter() - started}
