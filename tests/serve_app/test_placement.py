"""Pool placement and batch sizing, without a cluster."""

import asyncio
import contextlib

import numpy as np

from engine.backtester import Window
from engine.brief import BriefMetrics
from engine.layout import GENOME_WIDTH, N_METRICS
from serve_app.config import PoolSettings
from serve_app.pool import INLINE_REPLY_BYTES, WorkerPool, _Worker


def node(cpus, **labels):
    return {"NodeID": "n", "Alive": True, "Resources": {"CPU": float(cpus), "memory": 1e9, **labels}}


def test_labelled_nodes_get_their_configured_count_capped_by_the_label_units():
    pool = WorkerPool(PoolSettings(workers_per_label={"head": 12, "air": 10}))
    assert pool.placement(node(12, head=12.0)) == ("head", 12)
    assert pool.placement(node(10, air=10.0)) == ("air", 10)
    assert pool.placement(node(4, air=4.0)) == ("air", 4)  # never more than the node's label units


def test_other_nodes_get_one_worker_per_cpu():
    pool = WorkerPool(PoolSettings(workers_per_label={"head": 12}))
    assert pool.placement(node(8, gpu_box=1.0)) == (None, 8)
    assert WorkerPool(PoolSettings()).placement(node(2)) == (None, 2)


def test_chunks_carry_the_target_time_but_feed_every_worker():
    pool = WorkerPool(PoolSettings(batch_target_s=0.1))
    pool._seconds_per_genome_bar = 5e-9
    # 0.1 s / (5 ns * 50,000 bars) = 400 genomes per call; with no worker ready, one chunk of everything
    assert pool.chunk_size(1_000, 50_000) == 400
    assert pool.chunk_size(100, 50_000) == 100
    assert pool.chunk_size(10, 50) >= 1
    # the answer of a chunk (every genome's fitness, and every metric of the fittest ones on every fold) stays small
    # enough to travel in Ray's reply, and no smaller than it must
    brief = pool.chunk_size(10_000_000, 50, folds=4, keep=10)
    answer = brief * BriefMetrics.BYTES_PER_GENOME + BriefMetrics.bytes_kept(4, 10)
    assert answer <= INLINE_REPLY_BYTES < answer + BriefMetrics.BYTES_PER_GENOME
    assert brief * 8 * (4 * N_METRICS + 1) > 3 * INLINE_REPLY_BYTES  # every metric of as many would not
    # a search that asks for the fitness alone: 8 bytes a genome
    assert pool.chunk_size(10_000_000, 50, folds=4) == INLINE_REPLY_BYTES // 8 > brief


def test_populations_sharing_the_workers_are_cut_for_their_share_of_them():
    """A job's validation searches run four at once: on the two laptops' 22 workers each generation of 1,000 goes in
    6 calls, not 22 (the other searches' calls feed the rest); a search running alone is cut for every worker."""
    pool = WorkerPool(PoolSettings(batch_target_s=0.1))
    pool._seconds_per_genome_bar = 5e-9  # 400 genomes per call on 50,000 bars
    for index in range(22):
        pool._workers[str(index)] = _Worker(handle=None, node_id="n", label=None, ready=True)

    async def calls(sharing: int) -> int:
        """The calls ``evaluate`` queues for a generation of 1,000 (no dispatch loop runs: they stay queued)."""
        evaluation = asyncio.create_task(pool.evaluate("job", None, np.zeros((1_000, GENOME_WIDTH)),
                                                       [Window(0, 50_000)], sharing=sharing))
        await asyncio.sleep(0)
        queued = len(pool._queues["job"])
        evaluation.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await evaluation
        return queued

    assert asyncio.run(calls(1)) == 22
    assert asyncio.run(calls(4)) == 6
    assert asyncio.run(calls(20)) == 3  # by time then: 0.1 s of kernel a call at most
