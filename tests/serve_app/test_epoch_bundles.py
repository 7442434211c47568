"""Several islands' epochs in one call to a worker: the same outcomes as one call each; the pool packs a worker's share
of the waiting epochs into a call, within ``batch_target_s`` of kernel time and the bytes Ray sends inline."""

import asyncio
import dataclasses

import pytest
import ray

from engine.miner import MiningSession
from engine.settings import MinerSettings
from engine.synthetic import synthetic_candles
from serve_app.config import PoolSettings
from serve_app.pool import WorkerPool, _Chunk, _Worker
from serve_app.worker import UnknownMemory, memory_key
from tests.serve_app.test_island_memory import KEEP, assert_same, held
from tests.serve_app.test_worker_scoring import scoring_of

ISLANDS = 4


@pytest.fixture(scope="module")
def job():
    """(session, scoring, windows) of a four-island search of two epochs on synthetic candles."""
    candles = synthetic_candles(1_500, seed=5)
    settings = MinerSettings(population=80, generations=10, islands=ISLANDS, seed=3, permutations=0, min_trades=1)
    session = MiningSession(len(candles), candles.fingerprint, settings)
    return session, scoring_of(candles, settings.min_trades), [(w.start, w.end) for w in session.folds]


def alone(worker, scoring, epoch, windows):
    (outcome,), _ = ray.get(worker.evolve.remote(scoring, [epoch], windows, KEEP, "alone"))
    return outcome


def test_epochs_in_one_call_give_what_each_gives_alone_and_each_island_s_memory_is_kept(worker, job):
    session, scoring, windows = job
    epochs = [session.island_epoch(index) for index in range(ISLANDS)]
    together, _ = ray.get(worker.evolve.remote(scoring, epochs, windows, KEEP, "together"))
    assert [outcome.index for outcome in together] == list(range(ISLANDS))
    for epoch, outcome in zip(epochs, together, strict=True):
        assert_same(outcome, alone(worker, scoring.key, epoch, windows))
    assert {key for key in held(worker) if key[0] == "together"} == {("together", 0, i, 5) for i in range(ISLANDS)}

    # the islands' next epochs, sent without the memories the worker kept, in one call again
    following = [session.next_island_epoch(epochs[i], together[i], together[i - 1]) for i in range(ISLANDS)]
    light = [dataclasses.replace(epoch, seen=None) for epoch in following]
    again, _ = ray.get(worker.evolve.remote(scoring.key, light, windows, KEEP, "together"))
    for epoch, outcome in zip(following, again, strict=True):
        assert_same(outcome, alone(worker, scoring.key, epoch, windows))
    assert not {key for key in held(worker) if key[0] == "together"}  # the search's last epoch: none kept


def test_a_call_naming_one_memory_the_worker_lacks_runs_none_and_keeps_every_memory_it_held(worker, job):
    session, scoring, windows = job
    epochs = [session.island_epoch(index) for index in range(3)]
    ran, _ = ray.get(worker.evolve.remote(scoring, epochs[:2], windows, KEEP, "partial"))
    third = alone(worker, scoring.key, epochs[2], windows)  # kept under another job's name
    following = [session.next_island_epoch(epochs[i], outcome, outcome) for i, outcome in enumerate([*ran, third])]
    with pytest.raises(UnknownMemory, match=r"islands \[2\] of job partial"):
        ray.get(worker.evolve.remote(scoring.key, [dataclasses.replace(e, seen=None) for e in following], windows,
                                     KEEP, "partial"))
    assert {key for key in held(worker) if key[0] == "partial"} == {("partial", 0, 0, 5), ("partial", 0, 1, 5)}


def test_the_pool_sends_waiting_epochs_together_and_each_island_gets_its_own_outcome(worker, job):
    session, scoring, windows = job
    sizes = []

    async def scenario():
        pool = WorkerPool(PoolSettings(batch_target_s=10))  # this module's worker alone
        pool._workers["only"] = _Worker(worker, node_id="test", label=None, ready=True, calls=1)  # busy till told
        run = pool._run

        async def counted(record, chunks):
            sizes.append(len(chunks))
            await run(record, chunks)

        pool._run = counted
        pool._spawn(pool._dispatch_loop())
        epochs = [session.island_epoch(index) for index in range(ISLANDS)]
        calls = [asyncio.ensure_future(pool.evolve("pooled", scoring, epoch, session.folds, KEEP)) for epoch in epochs]
        await asyncio.sleep(0.1)  # all four queued while the worker is busy, then it is free
        pool._workers["only"].calls = 0
        pool._wakeup.set()
        return epochs, await asyncio.gather(*calls), pool._workers["only"]

    epochs, outcomes, record = asyncio.run(scenario())
    assert sizes == [ISLANDS]
    assert record.calls == 0 and not record.epochs  # nothing under way is counted for a job any more
    for epoch, outcome in zip(epochs, outcomes, strict=True):
        assert outcome.index == epoch.index
        assert_same(outcome, alone(worker, scoring.key, epoch, windows))


# ---- which epochs a free worker takes together (no cluster) ---------------------------------------------------------
def queued(pool: WorkerPool, session: MiningSession, scoring=None, job: str = "job") -> list[_Chunk]:
    """Every island's first epoch of ``session`` queued in ``pool``, as ``WorkerPool.evolve`` queues them."""
    loop = asyncio.get_running_loop()
    windows = [(w.start, w.end) for w in session.folds]
    bars = sum(w.bars for w in session.folds)
    chunks = []
    for index in range(len(session.search.islands)):
        epoch = session.island_epoch(index)
        chunks.append(_Chunk(job, epoch.genomes, bars, "evolve", (scoring, epoch, windows, KEEP, job),
                             loop.create_future(), memory=memory_key(job, epoch, epoch.start)))
    pool._enqueue(job, chunks)
    return chunks


def pool_of(workers: int, **settings) -> WorkerPool:
    pool = WorkerPool(PoolSettings(**settings))
    for index in range(workers):
        pool._workers[str(index)] = _Worker(handle=None, node_id="test", label=None, ready=True)
    return pool


def calls_taken(pool: WorkerPool) -> list[list[int]]:
    """The islands of each call the pool's workers take in turn until the queue is empty (none answered meanwhile)."""
    calls, workers = [], list(pool._workers.values())
    while chunks := pool._take(workers[len(calls) % len(workers)]):
        calls.append([chunk.args[1].index for chunk in chunks])
    return calls


def session_of(population: int, islands: int = 8, bars: int = 5_000, generations: int = 30) -> MiningSession:
    settings = MinerSettings(population=population, generations=generations, islands=islands, seed=1, permutations=0)
    return MiningSession(bars, "fingerprint", settings)


def test_a_free_worker_takes_its_share_of_the_waiting_epochs():
    async def shares(workers: int) -> list[list[int]]:
        pool = pool_of(workers, batch_target_s=10)
        queued(pool, session_of(400))
        return calls_taken(pool)

    assert asyncio.run(shares(1)) == [list(range(8))]
    assert asyncio.run(shares(2)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert asyncio.run(shares(3)) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert asyncio.run(shares(8)) == [[index] for index in range(8)]
    assert asyncio.run(shares(22)) == [[index] for index in range(8)]  # the two laptops: every island on its own


def test_a_worker_takes_first_the_islands_whose_memory_it_keeps():
    async def scenario():
        pool = pool_of(2, batch_target_s=10)
        queued(pool, session_of(400))
        worker = pool._workers["0"]
        for index in (6, 2):
            worker.memories[("job", 0, index, 0)] = None
        return [chunk.args[1].index for chunk in pool._take(worker)]

    assert asyncio.run(scenario()) == [2, 6, 0, 1]


def test_a_call_carries_at_most_batch_target_s_of_kernel_time():
    async def scenario():
        pool = pool_of(1, batch_target_s=0.1)
        chunks = queued(pool, session_of(400))
        pool._seconds_per_genome_bar = 0.035 / (chunks[0].genomes * chunks[0].bars)  # 35 ms an epoch
        return calls_taken(pool)

    assert asyncio.run(scenario()) == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_a_call_stays_within_the_bytes_ray_sends_inline():
    async def scenario():
        pool = pool_of(1, batch_target_s=10)  # 0.3 s of kernel time an epoch: the time would allow them all
        queued(pool, session_of(12_000, islands=4))  # islands of 3,000 genomes: 1 MB of state each
        return calls_taken(pool)

    assert asyncio.run(scenario()) == [[0], [1], [2], [3]]  # each over the limit alone: still sent, one by one


def test_only_epochs_of_the_same_scoring_and_windows_go_together():
    async def scenario():
        pool = pool_of(1, batch_target_s=10)
        session = session_of(400, islands=2)
        first, other = object(), object()
        queued(pool, session, scoring=first)
        queued(pool, session, scoring=other)  # the same job's validation search, say: another scoring
        return calls_taken(pool)

    assert asyncio.run(scenario()) == [[0, 1], [0, 1]]


def test_the_search_s_last_epochs_go_one_per_call():
    async def scenario(generations: int):
        pool = pool_of(1, batch_target_s=10)
        queued(pool, session_of(400, islands=4, generations=generations))
        return calls_taken(pool)

    assert asyncio.run(scenario(10)) == [[0, 1, 2, 3]]
    assert asyncio.run(scenario(5)) == [[0], [1], [2], [3]]  # its first epoch is its last: nothing follows
