"""A worker holds a few calls at once, but computes one at a time: it owns one CPU."""

import time

import numpy as np
import pytest
import ray

from engine.settings import RISK_PRESETS, MinerSettings, RiskLevel
from engine.space import GenomeSpace
from engine.synthetic import synthetic_candles
from serve_app.worker import BacktestWorker
from tests.serve_app.test_worker_scoring import scoring_of

BARS = 60_000
WINDOWS = [(0, BARS // 2), (BARS // 2, BARS)]


@pytest.fixture(scope="module")
def worker(service):  # the session's cluster; no CPU asked, the pool's workers hold them
    handle = BacktestWorker.options(num_cpus=0).remote("threads-test")
    yield handle
    ray.kill(handle)


@pytest.fixture(scope="module")
def batch(worker):
    """(scoring, genomes) of a batch that computes for a good part of a second, the worker's tables made."""
    scoring = scoring_of(synthetic_candles(BARS, seed=4), min_trades=5)
    genomes = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], MinerSettings().period_menu).random_population(
        3_000, np.random.default_rng(4))
    ray.get(worker.evaluate.remote(scoring, genomes[:10], WINDOWS, 0))
    return scoring, genomes


def test_a_worker_answers_info_while_a_batch_computes(worker, batch):
    scoring, genomes = batch
    computing = worker.evaluate.remote(scoring.key, genomes, WINDOWS, 0)
    time.sleep(0.05)  # the batch has started
    info = worker.info.remote()
    ready, _ = ray.wait([computing, info], num_returns=1, timeout=60)
    assert ready == [info], "info waited behind the batch"
    assert ray.get(info)["label"] == "threads-test"
    ray.get(computing)


def test_two_batches_sent_at_once_compute_one_after_the_other(worker, batch):
    scoring, genomes = batch
    started = time.perf_counter()
    answers = ray.get([worker.evaluate.remote(scoring.key, genomes, WINDOWS, 0) for _ in range(2)])
    wall = time.perf_counter() - started
    computing = [seconds for _, _, seconds in answers]
    # each batch's seconds are its time computing: one after the other they fit in the wall time of both; two
    # computing at once on this machine's cores would each take most of it
    assert sum(computing) <= wall, (computing, wall)
    np.testing.assert_array_equal(answers[0][1], answers[1][1])
