"""A worker's batches name a scoring it has used by key alone; one it does not hold is refused, never guessed."""

import asyncio
import dataclasses

import numpy as np
import pytest
import ray

from engine.backtester import LocalBacktester, Window
from engine.brief import BriefMetrics
from engine.evaluator import get_evaluator
from engine.scoring import job_fitness
from engine.settings import RISK_PRESETS, MinerSettings, RiskLevel
from engine.space import GenomeSpace
from engine.synthetic import synthetic_candles
from serve_app.config import EvaluatorLimits, PoolSettings
from serve_app.datasets import menu_features, put_tables
from serve_app.pool import WorkerPool, _Worker
from serve_app.worker import MAX_CACHED_SCORINGS, Scoring, UnknownScoring


def scoring_of(candles, min_trades: int) -> Scoring:
    """What the coordinator builds for a job on ``candles`` with the default evaluator (trusted, built in)."""
    evaluator = get_evaluator()
    return Scoring(dataset_id=candles.fingerprint, dataset=[put_tables(candles, menu_features(candles))],
                   costs=MinerSettings().costs, evaluator_version=evaluator.version,
                   evaluator=[ray.put((evaluator.name, evaluator.source, evaluator.params, True))],
                   limits=EvaluatorLimits(), min_trades=min_trades)


def assert_brief_of(brief: BriefMetrics, genomes, metrics, fitness, keep: int) -> None:
    expected = BriefMetrics.of(genomes, metrics, fitness, keep)
    np.testing.assert_array_equal(brief.rows, expected.rows)
    np.testing.assert_array_equal(brief.kept, expected.kept)


def test_a_scoring_used_once_is_named_by_key_and_scores_the_same(worker):
    candles = synthetic_candles(2_000, seed=3)
    evaluator = get_evaluator()
    scoring = scoring_of(candles, min_trades=5)
    genomes = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], MinerSettings().period_menu).random_population(
        20, np.random.default_rng(2))
    windows = [(0, 1_000), (1_000, 2_000)]

    with pytest.raises(UnknownScoring):  # never sent: the worker cannot know its dataset or evaluator
        ray.get(worker.evaluate.remote(scoring.key, genomes, windows, 3))
    whole = ray.get(worker.evaluate.remote(scoring, genomes, windows, 3))
    by_key = ray.get(worker.evaluate.remote(scoring.key, genomes, windows, 3))

    expected = LocalBacktester(candles, scoring.costs).evaluate_windows(genomes, [Window(*w) for w in windows])
    expected_fitness = job_fitness(evaluator, expected, 5)
    for brief, fitness, _ in (whole, by_key):
        np.testing.assert_array_equal(fitness, expected_fitness)
        assert_brief_of(brief, genomes, expected, expected_fitness, keep=3)
    brief, fitness, _ = ray.get(worker.evaluate.remote(scoring.key, genomes, windows, 0))
    assert brief is None  # a search that keeps only its best asks for the fitness alone
    np.testing.assert_array_equal(fitness, expected_fitness)

    derived = dataclasses.replace(scoring, min_trades=1_000)  # a validation search's: another key, another answer
    assert derived.key != scoring.key
    with pytest.raises(UnknownScoring):
        ray.get(worker.evaluate.remote(derived.key, genomes, windows, 0))
    _, fitness, _ = ray.get(worker.evaluate.remote(derived, genomes, windows, 0))
    np.testing.assert_array_equal(fitness, job_fitness(evaluator, expected, 1_000))


def test_a_worker_forgets_its_oldest_scorings_past_its_limit(worker):
    first = scoring_of(synthetic_candles(600, seed=4), min_trades=1)
    genomes = GenomeSpace(RISK_PRESETS[RiskLevel.LOW], MinerSettings().period_menu).random_population(
        3, np.random.default_rng(5))
    scorings = [first] + [dataclasses.replace(first) for _ in range(MAX_CACHED_SCORINGS)]
    for scoring in scorings:
        ray.get(worker.evaluate.remote(scoring, genomes, [(0, 600)], 0))
    with pytest.raises(UnknownScoring):
        ray.get(worker.evaluate.remote(first.key, genomes, [(0, 600)], 0))
    ray.get(worker.evaluate.remote(scorings[-1].key, genomes, [(0, 600)], 0))  # the newest are held


def test_the_pool_sends_a_scoring_again_to_a_worker_that_forgot_it(worker):
    candles = synthetic_candles(800, seed=6)
    scoring = scoring_of(candles, min_trades=1)
    genomes = GenomeSpace(RISK_PRESETS[RiskLevel.HIGH], MinerSettings().period_menu).random_population(
        6, np.random.default_rng(7))
    windows = [Window(0, 400), Window(400, 800)]
    spans = [(w.start, w.end) for w in windows]

    async def scenario():
        pool = WorkerPool(PoolSettings())  # this module's worker alone, fed by the pool's own dispatch loop
        held = pool._workers["only"] = _Worker(worker, node_id="test", label=None, ready=True)
        pool._spawn(pool._dispatch_loop())
        first = await pool.evaluate("job", scoring, genomes, windows, keep=2)
        assert scoring.key in held.scorings  # the pool will name it by key from now on
        for _ in range(MAX_CACHED_SCORINGS):  # other scorings push it out of the worker's memory
            await worker.evaluate.remote(dataclasses.replace(scoring), genomes, spans, 0)
        with pytest.raises(UnknownScoring):
            await worker.evaluate.remote(scoring.key, genomes, spans, 0)
        return first, await pool.evaluate("job", scoring, genomes, windows, keep=2)

    (metrics, fitness), (metrics_again, fitness_again) = asyncio.run(scenario())
    np.testing.assert_array_equal(metrics_again, metrics)
    np.testing.assert_array_equal(fitness_again, fitness)
    expected = LocalBacktester(candles, scoring.costs).evaluate_windows(genomes, windows)
    expected_fitness = job_fitness(get_evaluator(), expected, 1)
    np.testing.assert_array_equal(fitness, expected_fitness)
    filled = np.empty_like(expected)
    BriefMetrics.of(genomes, expected, expected_fitness, keep=2).fill(filled)
    np.testing.assert_array_equal(metrics, filled)  # NaN where the brief keeps nothing, in both


def test_the_pool_names_by_key_the_scorings_the_worker_keeps_and_no_older_one():
    """The pool's record of a worker's scorings is the worker's own cache: the last MAX_CACHED_SCORINGS used, a
    scoring used again moving to the newest; an older one goes whole, not by a key the worker has dropped."""
    scoring = scoring_of(synthetic_candles(300, seed=2), min_trades=1)
    record = _Worker(handle=None, node_id="test", label=None)
    first, *others = [scoring] + [dataclasses.replace(scoring) for _ in range(MAX_CACHED_SCORINGS)]
    record.holds(first)
    for other in others[:-1]:
        record.holds(other)
    record.holds(first)  # used again: now the newest
    record.holds(others[-1])  # one more than the worker keeps: the least recently used goes, others[0]
    assert record.scoring_arg(first) == first.key
    assert record.scoring_arg(others[0]) is others[0]
    assert all(record.scoring_arg(other) == other.key for other in others[1:])
    assert len(record.scorings) == MAX_CACHED_SCORINGS
