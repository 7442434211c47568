"""What happens to one job from the moment it holds a mining slot to its end: mine its generations and run its
validation searches on the pool (driven by ``engine.driver``, the loop in-process jobs use too; this module supplies
the persistence and the telling), pause while the disk is full or every worker refuses work, and end it (finished,
cancelled or failed) with its result, status and last event landing together.

``JobLifecycle`` is a part of ``MinerCoordinator`` (its base class), kept apart so that the coordinator's module holds
the service's surface and scheduling and this one the life of a job. It uses the coordinator's ``store``, ``pool``,
``datasets``, ``evaluators``, ``runtime``, ``reserve``, ``_cancelled``, ``_slot``, ``_job`` and ``_emit_engine``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Awaitable

from client import models as wire
from engine import events as ev
from engine.backtester import LocalBacktester
from engine.baselines import budget
from engine.candles import Candles
from engine.driver import Stopped, drive_generations, drive_search
from engine.features import FeatureStore
from engine.islands import EpochOutcome, IslandEpoch
from engine.miner import MiningSession
from engine.validation import ValidationTask, validation_tasks
from schema.events import Failed, Paused, Resumed
from serve_app import mapping
from serve_app.config import EvaluatorLimits
from serve_app.datasets import menu_features, put_tables
from serve_app.errors import StorageFull
from serve_app.worker import Scoring

PAUSE_PROBE_S = 2.0  # how often a job paused by a full disk tries whether writes succeed again
# a job's batch progress is stored and told at most this often: each telling is a durable commit on the event loop,
# and 22 workers answering ~10 batches a second each would otherwise spend the loop on commits
PROGRESS_EVERY_S = 0.25
log = logging.getLogger("ray")


class JobLifecycle:
    async def _end_early(self, job_id: str, error: str | None = None) -> None:
        """End a job that did not finish (cancelled, or failed with ``error``): its result, if it completed a
        generation, its status and its last event land together."""
        result = await self._early_result(job_id)
        generation = self._job(job_id)["progress"].get("generation", 0)
        for attempt in itertools.count():
            try:
                with self.store.transaction():
                    if result is not None:
                        self.store.save_result(job_id, result.model_dump(mode="json"))
                    self.store.set_status(job_id, "failed" if error else "cancelled", error=error)
                    self._emit_engine(job_id, Failed(error=error) if error else ev.Cancelled(generation=generation))
                return
            except StorageFull:  # the end must be stored: in the reserve's room, else once writes succeed again
                self.reserve.free()
                while attempt and not await asyncio.to_thread(self.reserve.take):
                    await asyncio.sleep(PAUSE_PROBE_S)

    async def _early_result(self, job_id: str) -> wire.JobResult | None:
        """The best of the generations a job completed, hall of fame included, from the checkpoint stored when it
        stopped (deleted once the job has ended); None if it completed none or the result cannot be built."""
        state = self.store.load_checkpoint(job_id)
        if state is None:
            return None
        job = self._job(job_id)
        spec, evaluator = wire.JobSpec(**job["spec"]), job["evaluator_version"]
        try:
            dataset = self.datasets.get(spec.dataset)
            candles = dataset.candles
            session, features = await asyncio.to_thread(lambda: (MiningSession(
                len(candles), candles.fingerprint, mapping.settings_for(spec),
                self.evaluators.compiled(evaluator), resume_state=state, asked=self.store.load_asked(job_id)),
                dataset.features))
            return await self._result(job_id, spec, candles, features, session, self.runtime.evaluator_limits,
                                      cancelled=True)
        except Exception:  # a job failing for want of its data or evaluator must still end
            log.exception("job %s ended early and its result could not be built", job_id)
            return None

    async def _run(self, job_id: str) -> None:
        try:
            if job_id in self._cancelled:  # cancelled before a restart: no need to wait for a slot
                raise Stopped
            async with self._slot():
                pauses = _Pauses(self, job_id)
                await self._resume_if_paused(job_id, pauses)
                watcher = asyncio.create_task(self._pause_while_refused(job_id, pauses))
                try:
                    while True:
                        job = self._job(job_id)
                        try:
                            await self._mine(job_id, wire.JobSpec(**job["spec"]), job["progress"],
                                             job["evaluator_version"])
                            break
                        except StorageFull as exc:  # nothing of the generation under way was stored: mine it again
                            await self._pause_until_writable(job_id, exc.message, pauses)
                finally:
                    watcher.cancel()
        except (Stopped, asyncio.CancelledError):
            if job_id not in self._cancelled:
                raise
            await self._end_early(job_id)
        except Exception as exc:
            await self._end_early(job_id, getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
        finally:
            self._cancelled.discard(job_id)  # per-job memory ends with the job (events live in the store)

    async def _resume_if_paused(self, job_id: str, pauses: _Pauses) -> None:
        """A job paused when the service stopped resumes now (its followers are told so), or pauses again if the
        disk is still full (workers that still refuse work pause it again at the watch's first look)."""
        if self._job(job_id)["status"] != "paused":
            return
        try:
            with self.store.transaction():
                self.store.set_status(job_id, "running")
                self._emit_engine(job_id, Resumed())
        except StorageFull as exc:
            await self._pause_until_writable(job_id, exc.message, pauses)

    async def _pause_while_refused(self, job_id: str, pauses: _Pauses) -> None:
        """Beside a job's mining: while every worker refuses work (it runs other engine code than the coordinator:
        a checkout updated without restarting the service, a laptop on another commit), the job's batches wait for
        someone to act, so the job says so, paused with the reason and the fix, and resumes when a worker may take
        work again. Nothing of the job is lost meanwhile: its batches are queued, not failed."""
        unstored = None  # the news last found impossible to store: logged once, tried again at every look
        while True:
            await asyncio.sleep(PAUSE_PROBE_S)
            refused = self.pool.all_refused()
            if refused == (_REFUSED in pauses):
                continue
            news = "waits for workers" if refused else "may take work again"
            try:
                if refused:
                    pauses.hold(_REFUSED, self.pool.none_ready())
                else:
                    pauses.release(_REFUSED)
                unstored = None
            except Exception as exc:  # a notice that failed must not end the watch: the job itself goes on
                if refused:  # not told: told at a later look
                    pauses.forget(_REFUSED)
                if news != unstored:
                    log.error("job %s %s, and that could not be stored: %s", job_id, news,
                              getattr(exc, "message", None) or repr(exc))
                unstored = news

    async def _pause_until_writable(self, job_id: str, reason: str, pauses: _Pauses) -> None:
        """The disk is full: store (in the room the reserve leaves) that the job is paused, then wait until the
        reserve can be taken back, i.e. writes succeed again, and store that it resumes."""
        self.reserve.free()
        try:
            pauses.hold(_DISK_FULL, reason)
        except StorageFull:  # even the reserve's room is gone (other writers): followers learn it on resuming
            log.error("job %s paused, and the disk is too full to store that", job_id)
        while True:
            while not await asyncio.to_thread(self.reserve.take):
                if job_id in self._cancelled:
                    raise Stopped
                await asyncio.sleep(PAUSE_PROBE_S)
            try:
                pauses.release(_DISK_FULL)
                return
            except StorageFull:  # full again before the resume was stored (another job took the room): still paused
                self.reserve.free()

    async def _mine(self, job_id: str, spec: wire.JobSpec, progress: dict, evaluator_version: str) -> None:
        dataset = self.datasets.get(spec.dataset)
        self.datasets.mined(dataset)
        candles = dataset.candles
        # the job holds its own references to the shared tables: the registry may forget them meanwhile
        dataset_ref, features = await asyncio.to_thread(lambda: (dataset.ref, dataset.features))
        evaluator = self.evaluators.compiled(evaluator_version)  # the version pinned at submission
        limits = self.runtime.evaluator_limits  # for pushed code; a job keeps the limits it (re)started with
        scoring = Scoring(dataset_id=candles.fingerprint, dataset=[dataset_ref], costs=mapping.settings_for(spec).costs,
                          evaluator_version=evaluator.version, evaluator=[self.evaluators.ref(evaluator.version)],
                          limits=limits, min_trades=spec.min_trades)
        # GA work (seeding, breeding: seconds at the largest populations) runs in a thread, so the event loop
        # keeps answering clients and feeding workers meanwhile
        session = await asyncio.to_thread(lambda: MiningSession(
            len(candles), candles.fingerprint, mapping.settings_for(spec), evaluator,
            resume_state=self.store.load_checkpoint(job_id), asked=self.store.load_asked(job_id)))
        told = self.store.last_progress_event(job_id)
        if told is None:
            self._emit_engine(job_id, session.started())
        self.store.set_status(job_id, "running")
        generations = _PoolGenerations(self, job_id, session, scoring, wire.Progress(**progress), told)
        self.store.set_progress(job_id, generations.progress.model_dump())
        try:
            await drive_generations(session, generations)
        except BaseException:  # stopped, failed or shut down: the result of an early end is built from the checkpoint
            try:
                generations.keep_last_told()
            except StorageFull:  # paused, it mines again from the checkpoint stored; if it ends, an earlier best
                pass
            except Exception:
                log.exception("job %s: the checkpoint of its last generation could not be stored", job_id)
            raise
        generations.keep_last_told()
        progress = generations.progress
        await self._validate(job_id, candles, scoring, session, told, progress)
        await self._finish(job_id, spec, candles, features, session, limits)

    async def _validate(self, job_id: str, candles: Candles, scoring: Scoring, session: MiningSession,
                        told: dict | None, progress: wire.Progress) -> None:
        """Run the validation searches still pending (a few at once), spread over the pool like any batch.

        Each finished search is stored with its event in one transaction; after a restart the unfinished ones
        are searched again from the start (deterministic: same answer) and nothing already told is repeated.
        """
        tasks = session.pending_tasks()
        if not tasks:
            return
        total = len(validation_tasks(session.settings))
        if told is None or told["type"] not in ("validation_started", "validation_search_finished"):
            self._emit_engine(job_id, ev.ValidationStarted(searches=total, permutations=session.settings.permutations))
        progress = progress.model_copy(update={"validation_done": total - len(tasks), "validation_searches": total})
        self.store.set_progress(job_id, progress.model_dump())
        limit = asyncio.Semaphore(self.runtime.validation_concurrency)
        running = 0  # searches under way: the workers are shared among their generations

        async def search(task: ValidationTask) -> None:
            nonlocal running
            async with limit:
                if job_id in self._cancelled:
                    raise Stopped
                data = await asyncio.to_thread(session.task_data, task, candles)  # a shuffle: tens of ms
                run = await asyncio.to_thread(session.task_run, task)
                on_data = dataclasses.replace(scoring, min_trades=run.min_trades)
                if data is not candles:
                    data_ref = await asyncio.to_thread(lambda: put_tables(data, menu_features(data)))
                    on_data = dataclasses.replace(on_data, dataset_id=data.fingerprint, dataset=[data_ref])
                # the fitness alone (keep 0): a validation search keeps only its best. Each generation is cut for its
                # search's share of the workers, not for all of them: the other searches feed the rest
                running += 1
                try:
                    await drive_search(run, lambda population: self.pool.evaluate(
                        job_id, on_data, population, run.folds, sharing=running, keep=0),
                                       lambda: job_id in self._cancelled)
                finally:
                    running -= 1
                nonlocal progress
                finished = session.record(task, run)
                progress = progress.model_copy(update={"validation_done": finished.done,
                                                       "evaluations": progress.evaluations + budget(session.settings)})
                with self.store.transaction():
                    self.store.save_checkpoint(job_id, session.generation, session.state())
                    self.store.set_progress(job_id, progress.model_dump())
                    self._emit_engine(job_id, finished)

        runners = [asyncio.create_task(search(task)) for task in tasks]
        try:
            await asyncio.gather(*runners)
        finally:
            for runner in runners:
                runner.cancel()

    async def _result(self, job_id: str, spec: wire.JobSpec, candles: Candles, features: FeatureStore,
                      session: MiningSession, limits: EvaluatorLimits, cancelled: bool = False) -> wire.JobResult:
        """Result with full reports, computed here (a few backtests) so it needs no worker; a pushed evaluator
        scores the best genome's folds in the coordinator's sandbox process, under ``limits``."""
        tester = LocalBacktester(candles, mapping.settings_for(spec).costs, features=features)

        def build() -> wire.JobResult:
            with self.evaluators.sandbox.limited(limits):
                result = session.result(tester, cancelled)
            best = session.search.best_row
            holdout = tester.report(best, session.holdout) if session.holdout else None
            return mapping.job_result(job_id, spec.dataset, result, tester.report(best, session.train), holdout)

        return await asyncio.to_thread(build)

    async def _finish(self, job_id: str, spec: wire.JobSpec, candles: Candles, features: FeatureStore,
                      session: MiningSession, limits: EvaluatorLimits) -> None:
        result = await self._result(job_id, spec, candles, features, session, limits)
        with self.store.transaction():  # result, status and terminal event land together or not at all
            self.store.save_result(job_id, result.model_dump(mode="json"))
            self.store.set_status(job_id, "finished")
            self._emit_engine(job_id, ev.Finished(best_fitness=result.fitness,
                                                  generations_run=result.generations_run))


_DISK_FULL, _REFUSED = "disk full", "every worker refuses work"


class _Pauses:
    """Why a running job is paused: the disk is full, every worker refuses work, or both at once. The job is told
    paused (with the reason) as each cause begins and resumed only when the last one ends, so a disk that frees up
    while the workers still refuse does not report a job running that cannot run."""

    def __init__(self, lifecycle: JobLifecycle, job_id: str):
        self.lifecycle, self.job_id = lifecycle, job_id
        self.causes: set[str] = set()

    def __contains__(self, cause: str) -> bool:
        return cause in self.causes

    def hold(self, cause: str, reason: str) -> None:
        """The job is paused for ``cause`` from now on, even if storing so fails (``StorageFull`` is raised)."""
        self.causes.add(cause)
        store = self.lifecycle.store
        with store.transaction():
            store.set_status(self.job_id, "paused")
            self.lifecycle._emit_engine(self.job_id, Paused(reason=reason))

    def release(self, cause: str) -> None:
        """``cause`` has ended: the last one ending resumes the job. Raises ``StorageFull`` (the cause still held)
        if the resume cannot be stored."""
        if self.causes == {cause}:
            store = self.lifecycle.store
            with store.transaction():
                store.set_status(self.job_id, "running")
                self.lifecycle._emit_engine(self.job_id, Resumed())
        self.causes.discard(cause)

    def forget(self, cause: str) -> None:
        """Stop counting ``cause`` without telling anyone (a pause that could not be stored, to be held again)."""
        self.causes.discard(cause)


class _PoolGenerations:
    """``drive_generations``' hooks for a job on the worker pool: each island's epoch is one call to a worker, which
    backtests and breeds it (``BacktestWorker.evolve``). The islands' progress is stored and told as they come back
    (at most every ``PROGRESS_EVERY_S``, and the last); an epoch's progress and generation bests land in one commit,
    with a checkpoint at most every ``checkpoint_every_s`` (``RuntimeConfig``), after the last epoch and when the job
    stops: a 1,000-genome search's checkpoint is 0.37 MB, and written after every generation of a fast job it took a
    tenth of the coordinator's CPU. After a restart the epochs since the last checkpoint are mined again (the same
    answers), and nothing followers were already told of them is told again."""

    def __init__(self, coordinator: JobLifecycle, job_id: str, session: MiningSession, scoring: Scoring,
                 progress: wire.Progress, told: dict | None):
        self.coordinator, self.job_id, self.session, self.scoring, self.progress = (coordinator, job_id, session,
                                                                                     scoring, progress)
        self.told_generation, self.told_evaluated = _told_so_far(told)
        self.announced = -1  # the generation whose start followers know of: only its progress may be told
        self.progress_told_at = -math.inf  # the first batch is always told
        self.checkpointed = session.generation  # the generation of the last checkpoint (the one resumed from)
        self.checkpointed_at = -math.inf  # the first generation's checkpoint is always written
        self.unsaved: tuple[int, dict] | None = None  # (generation, state) of the last one told, until it is stored

    def _told(self, generation: int, evaluated: float) -> bool:
        """Whether followers already know that ``evaluated`` genomes of ``generation`` were done (0: that it started,
        infinity: its best)."""
        return generation < self.told_generation or (generation == self.told_generation
                                                     and evaluated <= self.told_evaluated)

    def evolve(self, epoch: IslandEpoch) -> Awaitable[EpochOutcome]:
        return self.coordinator.pool.evolve(self.job_id, self.scoring, epoch, self.session.folds,
                                            self.session.metrics_kept)

    def announce(self, generation: int) -> None:
        if not self._told(generation, 0):  # after a restart, followers know of the ones mined again
            self.coordinator._emit_engine(self.job_id, ev.GenerationStarted(generation=generation))
        self.announced = generation

    def islands_done(self, generation: int, evaluated: int) -> None:
        total = self.session.settings.population
        if (generation != self.announced or self._told(generation, evaluated)
                or (evaluated < total and time.monotonic() - self.progress_told_at < PROGRESS_EVERY_S)):
            return
        self.progress_told_at = time.monotonic()
        store = self.coordinator.store
        with store.transaction():
            self.coordinator._emit_engine(self.job_id, ev.BatchEvaluated(generation=generation, evaluated=evaluated,
                                                                         total=total))
            store.set_progress(self.job_id, self.progress.model_copy(update={"evaluated": evaluated}).model_dump())

    async def record(self, bests: list[ev.GenerationBest], evaluated: int) -> None:
        session, store = self.session, self.coordinator.store
        self.unsaved = (session.generation, session.state())  # a copy: 0.06 ms at 1,000 genomes
        untold = [best for best in bests if not self._told(best.generation, math.inf)]
        due = time.monotonic() - self.checkpointed_at >= self.coordinator.runtime.checkpoint_every_s
        if not untold and not due:
            return
        if untold:
            self.progress = self.progress.model_copy(update={
                "generation": session.generation, "evaluated": 0,
                "evaluations": self.progress.evaluations + evaluated * len(untold)})
            famed = mapping.best_so_far(session)
        with store.transaction():  # the epoch's outcome lands whole: progress, events, and checkpoint if due
            saved = self._write_checkpoint() if due else None
            if untold:
                store.set_progress(self.job_id, self.progress.model_dump(),
                                   None if famed is None else famed.model_dump(mode="json"))
                for best in untold:
                    if best is not bests[0] and not self._told(best.generation, 0):
                        self.coordinator._emit_engine(self.job_id, ev.GenerationStarted(generation=best.generation))
                    self.coordinator._emit_engine(self.job_id, best)
        if saved is not None:
            self._saved(saved)

    def keep_last_told(self) -> None:
        """Store the checkpoint of the last generation told, if it is not yet: when the search ends, and when the
        job stops or fails (its result is built from it)."""
        if self.unsaved is not None:
            self._saved(self._write_checkpoint())

    def _write_checkpoint(self) -> int:
        generation, state = self.unsaved
        self.coordinator.store.save_checkpoint(self.job_id, generation, state,
                                               asked=self.session.asked[self.checkpointed:generation])
        return generation

    def _saved(self, generation: int) -> None:
        """The checkpoint of ``generation`` is committed."""
        self.checkpointed, self.checkpointed_at, self.unsaved = generation, time.monotonic(), None

    def stopping(self) -> bool:
        return self.job_id in self.coordinator._cancelled


def _told_so_far(last_event: dict | None) -> tuple[int, int]:
    """(generation, genomes evaluated) followers were told of before the coordinator stopped, from the job's last
    event: everything of the generations before that one, and of that one its start and its progress up to that many
    genomes (-1: nothing of it). After a restart the generations since the last checkpoint are mined again (the
    answers are deterministic); only the telling must not repeat."""
    if last_event is None or last_event["type"] not in ("generation_started", "batch_evaluated", "generation_best"):
        return 0, -1
    data = last_event["data"]
    if last_event["type"] == "generation_best":
        return data["generation"] + 1, -1
    return data["generation"], data.get("evaluated", 0)
