"""MinerCoordinator: the named, detached actor that owns jobs, datasets and the worker pool.

Created by the Serve ingress with ``get_if_exists=True``, so it outlives replica restarts and
redeploys. If it dies, Ray restarts it (``max_restarts=-1``) with empty memory: the JobStore is the
truth, and unfinished jobs resume from their last checkpoint, giving the same result they would
have given without the interruption.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import time

import ray

from client import models as wire
from engine.backtester import split_windows
from engine.scoring import fold_windows
from engine.sources import checkout_digest
from schema.events import EventData
from serve_app import backtests, backups, mapping
from serve_app.config import RuntimeConfig, ServiceSettings
from serve_app.datasets import DatasetRegistry
from serve_app.errors import Conflict, InvalidData, MinerError, NotFound, StorageFull, TooMany, Unavailable, shown
from serve_app.evaluators import EvaluatorRegistry, trial_failure
from serve_app.gc_pauses import settle_startup_objects
from serve_app.job_lifecycle import JobLifecycle
from serve_app.pool import WorkerPool
from serve_app.reserve import Reserve
from serve_app.store import JobStore
from serve_app.versions import runtime_versions

EVENT_WAIT_S = 20.0
log = logging.getLogger("ray")


def request_fingerprint(spec: wire.JobSpec) -> str:
    """What makes two submissions "the same request": the validated spec, so key order, spacing and spelled-out
    defaults do not matter."""
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


@ray.remote(num_cpus=0, max_restarts=-1)
class MinerCoordinator(JobLifecycle):
    def __init__(self, settings: dict):
        self.settings = ServiceSettings(**settings)
        s = self.settings
        self.store = JobStore(s.path(s.store_path))
        self.reserve = Reserve(self.store.path)
        # the last user_config survives a coordinator restart (the ingress only sends it on deploys)
        self.runtime = RuntimeConfig(**(self.store.get_setting("runtime") or {}))
        self.datasets = DatasetRegistry(s.path(s.data_dir) if s.data_dir else None, s.path(s.upload_dir),
                                        int(s.max_upload_mb * 1e6))
        self.evaluators = EvaluatorRegistry(self.store)
        self.pool = WorkerPool(self.runtime.pool)
        self._changed: dict[str, asyncio.Event] = {}
        self._cancelled: set[str] = set()
        self._runners: dict[str, asyncio.Task] = {}
        self._slot_free: asyncio.Condition | None = None
        self._mining = 0  # jobs holding a slot; at most runtime.max_running_jobs, read live
        self._start_lock: asyncio.Lock | None = None
        self._started = False
        self._backups: asyncio.Task | None = None

    # ---- start-up ----------------------------------------------------------------------------------
    async def _ensure_started(self) -> None:
        """Start the pool and resume unfinished jobs, once per process (also after a restart)."""
        if self._started:
            return
        self._start_lock = self._start_lock or asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            self._slot_free = asyncio.Condition()
            await self.pool.start()
            if not await asyncio.to_thread(self.reserve.take):
                log.warning("the disk holding %s is full: no reserve, so a pause may not be told", self.store.path)
            self._cancelled |= self.store.cancels_pending()  # acknowledged before a crash: carried out now
            for job in self.store.unfinished_jobs():
                self._launch(job["id"])
            self._backups = asyncio.create_task(self._back_up_regularly())
            self._started = True
            settle_startup_objects()

    async def _back_up_regularly(self) -> None:
        """An online backup of the store every ``backups.interval_h`` (read live), counted from the newest backup, so
        restarts add none; a failed one is logged and tried again an interval later."""
        failed_at = 0.0
        while True:
            settings = self.runtime.backups
            newest = backups.newest(self.store.path)
            due = max(backups.taken_at(newest) if newest else 0.0, failed_at) + settings.interval_h * 3600
            if time.time() < due:
                await asyncio.sleep(min(due - time.time(), 5.0))  # short naps: a new interval applies within seconds
                continue
            try:
                await asyncio.to_thread(self.store.backup, settings.keep)
            except (OSError, sqlite3.Error, backups.BackupFailed) as exc:
                failed_at = time.time()
                log.error("backup of the job store failed, next try in %g h: %s", settings.interval_h, exc)

    async def ping(self) -> bool:
        await self._ensure_started()
        return True

    async def configure(self, runtime: dict) -> None:
        """New ``user_config``: defaults for new jobs and pool sizing; running jobs keep what they pinned.

        A changed default evaluator goes through the same trial as a pushed one; if it fails, the previous
        default stays and the error is logged (the deploy itself must not take the service down).
        """
        previous = self.runtime
        self.runtime = RuntimeConfig(**runtime)
        self.store.put_setting("runtime", self.runtime.model_dump(mode="json"))
        self.pool.reconfigure(self.runtime.pool)
        await self._ensure_started()
        await self.pool.refresh()
        async with self._slot_free:  # a raised max_running_jobs lets queued jobs start now
            self._slot_free.notify_all()
        wanted = (self.runtime.default_evaluator, self.runtime.default_evaluator_params)
        if wanted != (previous.default_evaluator, previous.default_evaluator_params):
            try:
                await self.push_evaluator(wanted[0], None, wanted[1], make_default=True)
            except MinerError as exc:
                log.error("default evaluator from user_config not applied: %s", exc.message)

    async def push_evaluator(self, name: str, source: str | None, params: dict, make_default: bool) -> dict:
        """Add an evaluator version after a trial run in one worker; optionally make it the default.

        ``source`` None means: the latest stored source of ``name`` (a parameter change only).
        """
        await self._ensure_started()
        candidate = self.evaluators.candidate(name, source, params)
        while self.pool.ready_workers == 0:  # right after a (re)start the workers are still warming up
            if self.pool.all_refused():  # ... unless none may ever take work: say why instead of waiting for ever
                raise Unavailable(self.pool.none_ready())
            await asyncio.sleep(0.2)
        report = await self.pool.trial(candidate.name, candidate.source, candidate.params,
                                       self.runtime.evaluator_limits)
        if not report["ok"]:
            raise trial_failure(report)
        return self.evaluators.accept(candidate, make_default).model_dump()

    async def list_evaluators(self) -> list[dict]:
        return [info.model_dump() for info in self.evaluators.list()]

    # ---- events ------------------------------------------------------------------------------------
    def _emit_engine(self, job_id: str, event: EventData) -> None:
        self.store.append_event(job_id, *mapping.event_data(event))
        changed = self._changed.pop(job_id, None)
        if changed is not None:
            changed.set()

    async def events(self, job_id: str, since: int, wait_s: float = EVENT_WAIT_S) -> dict:
        """{"events": stored events after ``since``, "ended": whether the job's log is complete}.

        With nothing new yet on a live job, waits up to ``wait_s`` for the next event (long poll).
        """
        await self._ensure_started()
        ended = self._job(job_id)["status"] in wire.ENDED
        events = self.store.events_after(job_id, since)
        if not events and not ended:  # no await since the read above: an emit cannot slip in between
            changed = self._changed.setdefault(job_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait_s)
            ended = self._job(job_id)["status"] in wire.ENDED
            events = self.store.events_after(job_id, since)
        return {"events": events, "ended": ended and len(events) < 1000}

    # ---- jobs --------------------------------------------------------------------------------------
    def _job(self, job_id: str) -> dict:
        job = self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"unknown job '{shown(job_id)}'")
        return job

    @staticmethod
    def _info(job: dict) -> dict:
        return wire.JobInfo(**job).model_dump(mode="json")

    async def submit(self, spec: dict, idempotency_key: str | None = None) -> dict:
        """Validate, store (before answering), then queue a job.

        A repeated ``idempotency_key`` with the same request answers with the job it created (``replayed``), with a
        different request 409: never a second job. Nothing is awaited between the look-up and the insert, so two
        requests with one key cannot both create a job.
        """
        await self._ensure_started()
        requested = wire.JobSpec(**spec)
        key = None
        if idempotency_key is not None:
            key = (idempotency_key, request_fingerprint(requested))
            known = self.store.job_for_key(idempotency_key)
            if known is not None and known[1] != key[1]:
                raise Conflict(f"Idempotency-Key '{idempotency_key[:80]}' was already used for job {known[0]} with "
                               "a different request; send a new key for a new job")
            if known is not None:
                return {"id": known[0], "status": self._job(known[0])["status"], "replayed": True}
        self._check_limits(requested)
        if not await asyncio.to_thread(self.reserve.take):
            # the reserve is out (a job paused for the full disk): refuse new work, even where SQLite could still
            # squeeze a row into pages it already holds; a job that cannot be mined should not be accepted
            raise StorageFull.at(self.store.path)
        version = self.evaluators.resolve(requested.evaluator)["version"]
        resolved = mapping.resolve_spec(requested, self.runtime)
        dataset = self.datasets.get(resolved.dataset)  # unknown or broken dataset: 4xx now, not a failed job later
        try:
            fold_windows(split_windows(dataset.info.candles, resolved.holdout_fraction)[0], resolved.folds)
        except ValueError as exc:
            raise InvalidData(f"dataset '{resolved.dataset}': {exc}") from None
        progress = wire.Progress(generations=resolved.generations, population=resolved.population)
        job_id = self.store.create_job(resolved.model_dump(mode="json"), progress.model_dump(), key,
                                       evaluator_version=version)
        self._launch(job_id)
        return {"id": job_id, "status": "queued", "replayed": False}

    def _check_limits(self, spec: wire.JobSpec) -> None:
        """This service's configured limits (user_config), stricter than the wire schema's."""
        limits = self.runtime
        for field, asked, limit in (("population", spec.population, limits.max_population),
                                    ("generations", spec.generations, limits.max_generations)):
            if asked > limit:
                raise InvalidData(f"{field} {asked} is over this service's limit of {limit} "
                                  f"(user_config max_{field})")
        unfinished = self.store.count_unfinished()
        if unfinished >= limits.max_unfinished_jobs:
            raise TooMany(f"{unfinished} jobs are queued or running, the limit is {limits.max_unfinished_jobs} "
                          "(user_config max_unfinished_jobs); wait for some to finish or cancel some")

    def _launch(self, job_id: str) -> None:
        self._runners[job_id] = task = asyncio.create_task(self._run(job_id))
        task.add_done_callback(lambda _: self._runners.pop(job_id, None))

    async def job(self, job_id: str) -> dict:
        return self._info(self._job(job_id))

    async def jobs(self, limit: int = 100) -> list[dict]:
        return [self._info(job) for job in self.store.list_jobs(limit)]

    async def result(self, job_id: str) -> dict:
        job = self._job(job_id)
        result = self.store.get_result(job_id)
        if result is None:
            raise Conflict(f"job '{job_id}' is {job['status']}: a result exists once a job has ended (finished, or "
                           "cancelled or failed after completing a generation)")
        return result

    async def cancel(self, job_id: str) -> dict:
        job = self._job(job_id)
        if job["status"] in wire.ENDED:
            raise Conflict(f"job '{job_id}' is already {job['status']}")
        self.store.request_cancel(job_id)
        self._cancelled.add(job_id)
        self.pool.drop(job_id)  # its evaluate calls end now: a running job stops within moments
        runner = self._runners.get(job_id)
        if job["status"] == "queued":
            if runner is None:
                await self._end_early(job_id)
            else:
                runner.cancel()  # still waiting for a slot: it ends now
        return wire.CancelAccepted(id=job_id, status=wire.JobStatus.CANCELLING).model_dump(mode="json")

    @contextlib.asynccontextmanager
    async def _slot(self):
        """Wait (in submission order) until fewer than max_running_jobs jobs are mining."""
        async with self._slot_free:
            await self._slot_free.wait_for(lambda: self._mining < self.runtime.max_running_jobs)
            self._mining += 1
        try:
            yield
        finally:
            async with self._slot_free:
                self._mining -= 1
                self._slot_free.notify_all()

    async def backtest(self, request: dict) -> dict:
        """``POST /v1/backtests``: one strategy on a dataset, window and costs, run by a worker (``backtests``)."""
        await self._ensure_started()
        return await backtests.run(wire.BacktestRequest(**request), self.datasets, self.runtime, self.pool)

    # ---- datasets and cluster ----------------------------------------------------------------------
    async def list_datasets(self) -> list[dict]:
        return [d.model_dump() for d in self.datasets.list()]

    async def upload_dataset(self, name: str, content: bytes) -> dict:
        """Parsed in a thread: a large file takes seconds, and jobs and other requests must not wait for it."""
        return (await asyncio.to_thread(self.datasets.add_upload, name, content)).model_dump()

    async def cluster(self) -> dict:
        await self._ensure_started()
        workers = self.pool.workers()
        nodes = []
        for node in await asyncio.to_thread(ray.nodes):
            label, _ = self.pool.placement(node)
            here = [w for w in workers if w["node_id"] == node["NodeID"]]
            refused_one = next((w for w in here if w["refused"]), None)  # its versions show what differs
            nodes.append(wire.NodeInfo(
                node_id=node["NodeID"], address=node["NodeManagerAddress"], label=label,
                cpus=node["Resources"].get("CPU", 0.0), alive=node["Alive"],
                workers=sum(1 for w in here if w["ready"]), refused_workers=sum(1 for w in here if w["refused"]),
                refused_reason=refused_one and refused_one["refused"],
                refused_fix=refused_one and refused_one["refused_fix"],
                evaluations=self.pool.evaluations_by_node[node["NodeID"]],
                busy_seconds=self.pool.busy_seconds_by_node[node["NodeID"]],
                versions=(refused_one or {}).get("versions") or next((w["versions"] for w in here if w["versions"]),
                                                                     None)))
        ready = sum(1 for w in workers if w["ready"])
        refused = sum(1 for w in workers if w["refused"])
        return wire.ClusterInfo(nodes=nodes, workers=ready, pending_workers=len(workers) - ready - refused,
                                refused_workers=refused, versions=runtime_versions(),
                                checkout_engine=await asyncio.to_thread(checkout_digest)).model_dump()

    async def worker_details(self) -> list[dict]:
        return self.pool.workers()

    async def memory(self) -> dict:
        """This process's resident memory and what it keeps per job: events live in the store, not here."""
        import psutil

        return {"pid": os.getpid(), "rss": psutil.Process().memory_info().rss, "runners": len(self._runners),
                "followed_jobs": len(self._changed), "cancel_requests": len(self._cancelled)}

    async def worker_memory(self) -> list[dict]:
        return await self.pool.memory()
