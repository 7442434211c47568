"""A worker keeps an island's memory of keys for its next epoch, which then travels without it: the same outcome,
a fraction of the bytes; a memory the worker does not hold is refused, never guessed."""

import asyncio
import dataclasses

import numpy as np
import pytest
import ray

from engine.miner import MiningSession
from engine.settings import MinerSettings
from engine.synthetic import synthetic_candles
from serve_app.config import PoolSettings
from serve_app.pool import WorkerPool, _Chunk, _Worker
from serve_app.worker import UnknownMemory
from tests.serve_app.test_worker_scoring import scoring_of

KEEP = 2


@pytest.fixture(scope="module")
def job():
    """(session, scoring, windows) of a one-island search of three epochs on synthetic candles."""
    candles = synthetic_candles(1_500, seed=5)
    settings = MinerSettings(population=40, generations=15, islands=1, seed=3, permutations=0, min_trades=1)
    session = MiningSession(len(candles), candles.fingerprint, settings)
    return session, scoring_of(candles, settings.min_trades), [(w.start, w.end) for w in session.folds]


def held(worker) -> set:
    return ray.get(worker.__ray_call__.remote(lambda self: set(self._memories)))


def assert_same(outcome, expected) -> None:
    for key in ("rows", "elite_rows", "elite_fitness", "best"):
        np.testing.assert_array_equal(outcome.state[key], expected.state[key])
    assert outcome.state["rng"] == expected.state["rng"]
    for generation, other in zip(outcome.generations, expected.generations, strict=True):
        np.testing.assert_array_equal(generation.keys, other.keys)
        np.testing.assert_array_equal(generation.fitness, other.fitness)


def test_an_epoch_sent_without_the_memory_the_worker_kept_gives_the_same_outcome(worker, job):
    session, scoring, windows = job
    first = session.island_epoch(0)
    (outcome,), _ = ray.get(worker.evolve.remote(scoring, [first], windows, KEEP, "kept"))
    assert ("kept", 0, 0, 5) in held(worker)
    following = session.next_island_epoch(first, outcome, outcome)
    assert following.seen and following.start == 5

    (whole,), _ = ray.get(worker.evolve.remote(scoring.key, [following], windows, KEEP, "other job"))
    (light,), _ = ray.get(worker.evolve.remote(scoring.key, [dataclasses.replace(following, seen=None)], windows, KEEP,
                                               "kept"))
    assert_same(light, whole)
    assert ("kept", 0, 0, 5) not in held(worker) and ("kept", 0, 0, 10) in held(worker)

    with pytest.raises(UnknownMemory):  # used once, and never held for this job
        ray.get(worker.evolve.remote(scoring.key, [dataclasses.replace(following, seen=None)], windows, KEEP, "kept"))
    with pytest.raises(UnknownMemory):
        ray.get(worker.evolve.remote(scoring.key, [dataclasses.replace(following, seen=None)], windows, KEEP, "new"))


def test_the_pool_sends_an_island_without_its_memory_to_the_worker_keeping_it_and_whole_once_forgotten(worker, job):
    session, scoring, windows = job
    folds = session.folds

    async def scenario():
        pool = WorkerPool(PoolSettings())  # this module's worker alone, fed by the pool's own dispatch loop
        record = pool._workers["only"] = _Worker(worker, node_id="test", label=None, ready=True)
        pool._spawn(pool._dispatch_loop())
        epochs, outcomes = [session.island_epoch(0)], []
        for step in range(3):
            if step == 2:  # the worker loses what it kept: the pool's record says otherwise, the epoch goes again whole
                await worker.__ray_call__.remote(lambda self: self._memories.clear())
            outcomes.append(await pool.evolve("pooled", scoring, epochs[-1], folds, KEEP))
            if step < 2:  # the worker keeps the next epoch's memory, and used the one it kept (sent without it)
                assert list(record.memories) == [("pooled", 0, 0, 5 * (step + 1))]
                kept = await worker.__ray_call__.remote(lambda self: set(self._memories))
                assert {key for key in kept if key[0] == "pooled"} == set(record.memories)
            if step < 2:
                epochs.append(session.next_island_epoch(epochs[-1], outcomes[-1], outcomes[-1]))
        return epochs, outcomes, record

    epochs, outcomes, record = asyncio.run(scenario())
    assert not record.memories  # the last epoch of the search: nothing kept for a next one
    assert not {key for key in held(worker) if key[0] == "pooled"}
    for epoch, outcome in zip(epochs, outcomes, strict=True):
        (expected,), _ = ray.get(worker.evolve.remote(scoring.key, [epoch], windows, KEEP, "reference"))
        assert_same(outcome, expected)


def test_a_free_worker_takes_first_the_island_whose_memory_it_keeps():
    async def scenario():
        pool = WorkerPool(PoolSettings())
        record = _Worker(handle=None, node_id="test", label=None, ready=True)
        loop = asyncio.get_running_loop()
        chunks = [_Chunk("job", 10, 100, "evolve", (), loop.create_future(), memory=("job", 0, island, 5))
                  for island in range(3)]
        pool._enqueue("job", chunks)
        record.memories[("job", 0, 2, 5)] = None
        taken = [pool._next_chunk(record) for _ in range(3)]
        assert pool._next_chunk(record) is None
        return chunks, taken

    chunks, taken = asyncio.run(scenario())
    assert taken == [chunks[2], chunks[0], chunks[1]]
