"""A worker that runs other engine code than the coordinator gets no batch: its metrics could differ, and a job's
result would then depend on where its batches ran (a laptop whose checkout was not updated)."""

import asyncio

import numpy as np
import pytest
import ray

from engine.backtester import Window
from engine.settings import RISK_PRESETS, MinerSettings, RiskLevel
from engine.sources import DIGEST
from engine.space import GenomeSpace
from engine.synthetic import synthetic_candles
from serve_app import mapping
from serve_app.config import PoolSettings
from serve_app.job_lifecycle import PAUSE_PROBE_S, JobLifecycle, _Pauses
from serve_app.pool import WorkerPool, _Worker, engine_mismatch
from serve_app.store import JobStore
from serve_app.worker import BacktestWorker
from tests.serve_app.test_worker_scoring import scoring_of

OTHER_ENGINE = "0123456789abcdef"  # what a head on another commit would run


@pytest.fixture
def worker(service):  # the session's cluster; no CPU asked, the pool's workers hold them
    handle = BacktestWorker.options(num_cpus=0).remote("engine-version-test")
    yield handle
    ray.kill(handle)


def test_a_worker_on_other_engine_code_is_refused_and_gets_no_batch_while_one_on_the_same_code_gets_it(worker):
    candles = synthetic_candles(600, seed=11)
    scoring = scoring_of(candles, min_trades=1)
    genomes = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], MinerSettings().period_menu).random_population(
        4, np.random.default_rng(11))

    async def joined(pool: WorkerPool) -> _Worker:
        record = pool._workers["only"] = _Worker(worker, node_id="joining", label=None)
        await pool._await_ready("only", record)
        pool._spawn(pool._dispatch_loop())
        return record

    async def scenario():
        other = WorkerPool(PoolSettings(), engine=OTHER_ENGINE)
        refused = await joined(other)
        view = other.workers()
        told = other.all_refused(), other.none_ready()
        with pytest.raises(TimeoutError):  # the batch waits for a worker that may take it; this one never may
            await asyncio.wait_for(other.evaluate("job", scoring, genomes, [Window(0, 600)]), 3.0)
        same = WorkerPool(PoolSettings())  # the coordinator's own digest: this checkout's
        accepted = await joined(same)
        _, fitness = await same.evaluate("job", scoring, genomes, [Window(0, 600)])
        return refused, view, told, other.ready_workers, accepted, fitness, same.all_refused()

    refused, view, told, ready, accepted, fitness, accepted_all_refused = asyncio.run(scenario())
    assert not refused.ready and ready == 0
    # the head's checkout is this one, so the coordinator (engine=OTHER_ENGINE) is the one behind
    assert refused.refused == f"runs engine {DIGEST}, as the head's checkout does, but the coordinator still runs " \
                              f"{OTHER_ENGINE} (it started before the update)"
    assert refused.refused_fix == "restart the service on the head: deploy/stop-head.sh, then deploy/start-head.sh"
    assert view == [{"node_id": refused.node_id, "label": None, "ready": False, "busy": False, "pid": refused.pid,
                     "versions": refused.versions, "refused": refused.refused, "refused_fix": refused.refused_fix}]
    assert refused.versions["engine"] == DIGEST
    assert told == (True, f"no worker is ready; 1 refused: each {refused.refused}; {refused.refused_fix}")
    assert not accepted_all_refused
    assert accepted.ready and accepted.refused is None and fitness.shape == (4,)


def test_a_refused_worker_is_told_apart_a_laptop_behind_from_a_coordinator_behind():
    assert engine_mismatch("aaaa", "bbbb", checkout="bbbb") == ("runs engine aaaa, the head bbbb",
                                                        "update that laptop's checkout to the head's commit")
    why, fix = engine_mismatch("aaaa", "bbbb", checkout="aaaa")  # the head was updated, its coordinator not restarted
    assert why == "runs engine aaaa, as the head's checkout does, but the coordinator still runs bbbb (it started " \
                  "before the update)" and "stop-head.sh" in fix


class _JobHost(JobLifecycle):
    """The parts of the coordinator a job's pause for refused workers uses: its pool and its store."""

    def __init__(self, pool: WorkerPool, store: JobStore):
        self.pool, self.store = pool, store

    def _emit_engine(self, job_id, event):
        self.store.append_event(job_id, *mapping.event_data(event))


def test_a_job_whose_every_worker_refuses_work_is_paused_with_the_reason_and_resumes_when_one_may_take_it(
        worker, tmp_path):
    """Before, such a job waited for ever with no word to its followers: its batches sat in the queue."""
    candles = synthetic_candles(600, seed=12)
    scoring = scoring_of(candles, min_trades=1)
    genomes = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], MinerSettings().period_menu).random_population(
        4, np.random.default_rng(12))
    store = JobStore(tmp_path / "miner.db")
    job_id = store.create_job({"dataset": "synthetic"}, {}, evaluator_version="builtin")
    store.set_status(job_id, "running")

    async def scenario():
        # the head's checkout was updated and the service not restarted: every worker runs other code than the pool
        pool = WorkerPool(PoolSettings(), engine=OTHER_ENGINE)
        pool._workers["behind"] = behind = _Worker(worker, node_id="head", label=None)
        await pool._await_ready("behind", behind)
        pool._spawn(pool._dispatch_loop())
        host = _JobHost(pool, store)
        watcher = asyncio.create_task(host._pause_while_refused(job_id, _Pauses(host, job_id)))
        batch = asyncio.create_task(pool.evaluate(job_id, scoring, genomes, [Window(0, 600)]))
        await asyncio.sleep(2.5 * PAUSE_PROBE_S)
        while_refused = store.get_job(job_id)["status"], store.events_after(job_id, 0), batch.done(), pool.none_ready()
        # the service restarted on the updated checkout: its pool expects the code its workers run
        pool.engine = DIGEST
        del pool._workers["behind"]
        pool._workers["updated"] = updated = _Worker(worker, node_id="head", label=None)
        await pool._await_ready("updated", updated)
        _, fitness = await asyncio.wait_for(batch, 30)
        await asyncio.sleep(2.5 * PAUSE_PROBE_S)
        watcher.cancel()
        return while_refused, store.get_job(job_id)["status"], store.events_after(job_id, 0), fitness

    (status, events, batch_done, reason), status_after, events_after, fitness = asyncio.run(scenario())
    assert status == "paused" and not batch_done
    assert [(e["type"], e["data"]) for e in events] == [("paused", {"reason": reason})]
    assert "1 refused: each runs engine" in reason and "restart the service on the head" in reason
    assert status_after == "running"
    assert [e["type"] for e in events_after] == ["paused", "resumed"]  # told once each, not at every probe
    assert fitness.shape == (4,) and np.isfinite(fitness).all()
