"""Pool placement and batch sizing, without a cluster."""

from engine.brief import BriefMetrics
from engine.layout import N_METRICS
from serve_app.config import PoolSettings
from serve_app.pool import INLINE_REPLY_BYTES, WorkerPool


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
