"""A job paused by a full disk resumes, whatever fails while it does: it never ends failed for want of room, and
its checkpoint stays. ``JobLifecycle`` runs here on a real job store and reserve; its mining is a stand-in that
fills the store as a generation's commit would."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

from serve_app import job_lifecycle, mapping
from serve_app.errors import StorageFull
from serve_app.job_lifecycle import JobLifecycle
from serve_app.reserve import Reserve
from serve_app.store import JobStore


class EveryWorkerTakesWork:
    """A pool whose workers all run the coordinator's engine code (the job's watch for refused workers stays quiet)."""

    @staticmethod
    def all_refused() -> bool:
        return False


class OneJob(JobLifecycle):
    """The parts of the coordinator ``JobLifecycle`` uses, for one job whose first generation meets a full disk."""

    def __init__(self, store: JobStore, reserve: Reserve):
        self.store, self.reserve, self._cancelled, self.mined = store, reserve, set(), 0
        self.pool = EveryWorkerTakesWork()

    def _job(self, job_id: str) -> dict:
        return self.store.get_job(job_id)

    @contextlib.asynccontextmanager
    async def _slot(self):
        yield

    def _emit_engine(self, job_id: str, event) -> None:
        self.store.append_event(job_id, *mapping.event_data(event))

    async def _mine(self, job_id: str, spec, progress: dict, evaluator_version: str) -> None:
        self.mined += 1
        if self.mined == 1:
            raise StorageFull.at(self.store.path)  # the generation's commit found the disk full
        self.store.save_checkpoint(job_id, 5, {"population": np.arange(100.0)})

    async def _early_result(self, job_id: str) -> None:
        return None


class FailingJob(OneJob):
    async def _mine(self, job_id: str, spec, progress: dict, evaluator_version: str) -> None:
        raise ValueError("its candles changed")


def a_store_with_one_running_job(tmp_path) -> tuple[JobStore, Reserve, str]:
    store = JobStore(tmp_path / "miner.db")
    reserve = Reserve(store.path, size=64 * 1024)
    assert reserve.take()
    job_id = store.create_job({"dataset": "synthetic"}, {}, evaluator_version="balanced@1")
    store.set_status(job_id, "running")
    store.save_checkpoint(job_id, 4, {"population": np.arange(10.0)})
    return store, reserve, job_id


def full_once_when_set(store: JobStore, monkeypatch, wanted: str, times: int = 1) -> list[bool]:
    """The next ``times`` commits that set the job's status to ``wanted`` find the disk full; what is left of them."""
    set_status, left = store.set_status, [True] * times

    def full_disk_first(job: str, status: str, error: str | None = None) -> None:
        if status == wanted and left:
            left.pop()
            raise StorageFull.at(store.path)
        set_status(job, status, error)

    monkeypatch.setattr(store, "set_status", full_disk_first)
    return left


def test_a_resume_that_meets_a_full_disk_again_stays_paused_and_resumes_later(tmp_path, monkeypatch):
    monkeypatch.setattr(job_lifecycle, "PAUSE_PROBE_S", 0.01)
    store, reserve, job_id = a_store_with_one_running_job(tmp_path)
    full_once = full_once_when_set(store, monkeypatch, "running")  # another job took the room back meanwhile
    lifecycle = OneJob(store, reserve)
    asyncio.run(lifecycle._run(job_id))
    assert lifecycle.mined == 2 and not full_once
    assert store.get_job(job_id)["status"] == "running" and store.get_job(job_id)["error"] is None
    assert [e["type"] for e in store.events_after(job_id, 0)] == ["paused", "resumed"]
    assert store.load_checkpoint(job_id) is not None and reserve.held


def test_a_failing_job_whose_end_meets_a_full_disk_still_ends_failed_with_its_error(tmp_path, monkeypatch):
    monkeypatch.setattr(job_lifecycle, "PAUSE_PROBE_S", 0.01)
    store, reserve, job_id = a_store_with_one_running_job(tmp_path)
    left = full_once_when_set(store, monkeypatch, "failed", times=2)  # in the reserve's room too
    asyncio.run(FailingJob(store, reserve)._run(job_id))
    assert not left
    job = store.get_job(job_id)
    assert job["status"] == "failed" and job["error"] == "ValueError: its candles changed"
    assert [e["type"] for e in store.events_after(job_id, 0)] == ["failed"]


def test_a_job_paused_when_the_service_stopped_is_told_resumed_when_it_starts_again(tmp_path, monkeypatch):
    monkeypatch.setattr(job_lifecycle, "PAUSE_PROBE_S", 0.01)
    store, reserve, job_id = a_store_with_one_running_job(tmp_path)
    store.set_status(job_id, "paused")
    lifecycle = OneJob(store, reserve)
    lifecycle.mined = 1  # no full disk this time
    asyncio.run(lifecycle._run(job_id))
    assert store.get_job(job_id)["status"] == "running"
    assert [e["type"] for e in store.events_after(job_id, 0)] == ["resumed"]


def test_a_job_paused_when_the_service_stopped_pauses_again_if_the_disk_is_still_full(tmp_path, monkeypatch):
    monkeypatch.setattr(job_lifecycle, "PAUSE_PROBE_S", 0.01)
    store, reserve, job_id = a_store_with_one_running_job(tmp_path)
    store.set_status(job_id, "paused")
    left = full_once_when_set(store, monkeypatch, "running")
    lifecycle = OneJob(store, reserve)
    lifecycle.mined = 1
    asyncio.run(lifecycle._run(job_id))
    assert not left and store.get_job(job_id)["status"] == "running"
    assert [e["type"] for e in store.events_after(job_id, 0)] == ["paused", "resumed"]


class RefusingPool:
    """A pool whose workers all refuse work while ``refused`` is set (another engine version)."""

    def __init__(self):
        self.refused = False

    def all_refused(self) -> bool:
        return self.refused

    @staticmethod
    def none_ready() -> str:
        return "every worker runs other engine code; restart them"


class FullDiskWhileWorkersRefuse(OneJob):
    """A job whose first generation meets a full disk while every worker starts refusing work; mined again, its
    batches wait until a worker takes work (the disk frees up first, below)."""

    def __init__(self, store: JobStore, reserve: Reserve):
        super().__init__(store, reserve)
        self.pool, self.disk_full = RefusingPool(), True
        reserve.take = lambda: not self.disk_full

    async def _mine(self, job_id: str, spec, progress: dict, evaluator_version: str) -> None:
        self.mined += 1
        if self.mined == 1:
            self.pool.refused = True
            raise StorageFull.at(self.store.path)
        while self.pool.all_refused():  # the generation's batches are queued, not failed
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # then evaluated


def test_a_job_paused_for_a_full_disk_and_for_refusing_workers_resumes_only_when_both_have_ended(tmp_path,
                                                                                                   monkeypatch):
    monkeypatch.setattr(job_lifecycle, "PAUSE_PROBE_S", 0.01)
    store, reserve, job_id = a_store_with_one_running_job(tmp_path)
    lifecycle = FullDiskWhileWorkersRefuse(store, reserve)

    def told() -> list[tuple[str, str | None]]:
        return [(e["type"], e["data"].get("reason")) for e in store.events_after(job_id, 0)]

    async def wait_for(condition) -> None:
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"not reached; told {told()}")

    async def scenario() -> None:
        run = asyncio.create_task(lifecycle._run(job_id))
        await wait_for(lambda: len(told()) == 2)
        (first, disk), (second, workers) = told()
        assert first == second == "paused" and workers == "every worker runs other engine code; restart them"
        assert "full" in disk
        lifecycle.disk_full = False  # the disk frees up; the workers still refuse
        await wait_for(lambda: lifecycle.mined == 2)
        await asyncio.sleep(0.1)  # ten looks of the watch
        assert store.get_job(job_id)["status"] == "paused" and [kind for kind, _ in told()] == ["paused", "paused"]
        lifecycle.pool.refused = False
        await asyncio.wait_for(run, 5)

    asyncio.run(scenario())
    assert [kind for kind, _ in told()] == ["paused", "paused", "resumed"]
    assert store.get_job(job_id)["status"] == "running"
