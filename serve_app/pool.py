"""WorkerPool: long-lived BacktestWorker actors on every alive node, shared fairly by all jobs.

Placement follows labels, never node ids: a node carrying a custom resource named in
``workers_per_label`` (started with ``ray start --resources '{"air": 10}'``) gets that many workers,
each requesting one unit of the label; other nodes get one worker per CPU. A laptop that sleeps and
rejoins under a new node id is simply a new node: the refresh loop places workers on it.

Scheduling policy (docs/architecture.md): each job's population is cut into chunks sized so that a
call carries about ``batch_target_s`` of kernel time; free workers take chunks from the jobs' queues in
round-robin order, so a small job waits at most one chunk per running job, never behind a whole long
job. A job's islands' epochs are its chunks of the search; when more of them wait than there are workers, a worker
takes its fair share in one call (up to ``batch_target_s`` of kernel time, inline in Ray's messages): Ray's own work
around a call is 1-2 ms of a laptop's cores, a tenth of an epoch on a short window. A chunk whose worker dies is
re-queued at once; one that takes longer than ``batch_timeout_s`` is also sent to another worker and the first answer
wins (answers are deterministic, so duplicates are harmless). Results are placed by genome index, never by
completion order.

A worker that runs other engine code than the coordinator (``engine.sources``: a laptop whose checkout was not
updated) is refused: it gets no batch, since its metrics could differ and a job's result would then depend on where
its batches ran. The cluster view says so (``miner doctor`` names the node); it is replaced after
``REFUSED_RETRY_S``, so a laptop brought up to date is used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from engine.backtester import Window
from engine.brief import BriefMetrics
from engine.islands import EpochOutcome, IslandEpoch, wire_bytes
from engine.layout import N_METRICS
from engine.sources import DIGEST, checkout_digest
from serve_app.config import INLINE_OBJECT_BYTES, EvaluatorLimits, PoolSettings
from serve_app.sandbox import START_TIMEOUT_S
from serve_app.worker import (
    MAX_CACHED_MEMORIES,
    MAX_CACHED_SCORINGS,
    BacktestWorker,
    MemoryKey,
    Scoring,
    UnknownMemory,
    UnknownScoring,
    memory_key,
)

# A call's argument and answer stay under the size Ray sends inline (``INLINE_OBJECT_BYTES``), with room to spare: a
# larger one goes through the object store, which here more than doubled a call's round trip (2.7 -> 6.8 ms) and the
# coordinator's CPU for it (1.2 -> 2.8 ms).
INLINE_REPLY_BYTES = INLINE_OBJECT_BYTES * 9 // 10

log = logging.getLogger("ray")
WORKER_LOST = (ActorDiedError, ActorUnavailableError, RayActorError)
READY_WAIT_S = 30.0  # how long a call outside the queues waits for a ready worker
REFUSED_RETRY_S = 60.0  # a worker refused for its engine code is replaced after this (its laptop may be updated)


@dataclass
class _Worker:
    handle: ray.actor.ActorHandle
    node_id: str
    label: str | None
    ready: bool = False
    calls: int = 0  # batches sent and not answered (up to ``calls_per_worker``)
    reserved: bool = False  # held for one ``call`` outside the queues
    retiring: bool = False
    pid: int | None = None
    versions: dict[str, str] | None = None  # Python, Ray, numba, package and engine versions where the worker runs
    refused: str | None = None  # why it gets no work: it runs other engine code than the coordinator
    refused_fix: str | None = None
    refused_at: float = 0.0
    # keys of the scorings it holds, sent by key alone: the worker's own cache, least recently used first, as many as
    # it keeps (a key it dropped all the same, with its dataset, say, is answered with UnknownScoring and resent)
    scorings: OrderedDict[str, None] = field(default_factory=OrderedDict)
    # islands' memories of keys it keeps for their next epochs, as its own cache does (oldest first)
    memories: OrderedDict[MemoryKey, None] = field(default_factory=OrderedDict)
    epochs: Counter[str] = field(default_factory=Counter)  # islands' epochs in its calls under way, by job

    def scoring_arg(self, scoring: Scoring) -> Scoring | str:
        return scoring.key if scoring.key in self.scorings else scoring

    def holds(self, scoring: Scoring) -> None:
        """The worker has just used ``scoring`` (it remembers the scorings of its last ``MAX_CACHED_SCORINGS`` uses)."""
        self.scorings[scoring.key] = None
        self.scorings.move_to_end(scoring.key)
        while len(self.scorings) > MAX_CACHED_SCORINGS:
            self.scorings.popitem(last=False)

    def epoch_arg(self, epoch: IslandEpoch, memory: MemoryKey) -> IslandEpoch:
        """The epoch, without its memory of keys if the worker holds it."""
        return dataclasses.replace(epoch, seen=None) if memory in self.memories else epoch

    def ran(self, job: str, epoch: IslandEpoch) -> None:
        """The worker has run ``job``'s ``epoch``: it used the memory it held for it, and keeps the next epoch's (its
        last ``MAX_CACHED_MEMORIES``)."""
        self.memories.pop(memory_key(job, epoch, epoch.start), None)
        if epoch.continues:
            self.memories[memory_key(job, epoch, epoch.stop)] = None
            while len(self.memories) > MAX_CACHED_MEMORIES:
                self.memories.popitem(last=False)

    @property
    def busy(self) -> bool:
        return self.calls > 0 or self.reserved


@dataclass
class _Chunk:
    """One piece of a job's work for a worker: ``BacktestWorker.evaluate`` (genomes [lo, hi) of a population, one call)
    or ``evolve`` (an island's epoch, alone in a call or with others of its job); its answer lands in ``future``."""

    job: str
    genomes: int  # backtests it holds
    bars: int  # bars each genome is backtested on (all folds)
    method: str
    args: tuple  # the method's, the scoring first
    future: asyncio.Future
    lo: int = 0
    sent_at: list[float] = field(default_factory=list)
    memory: MemoryKey | None = None  # an island's epoch: the key of its memory of keys on the worker that ran the last


def engine_mismatch(theirs: str | None, coordinator: str, checkout: str) -> tuple[str, str]:
    """(why, fix) for a worker on engine code ``theirs`` that gets no work: its laptop is behind, or the coordinator
    is (it kept running the code it started with while the head's checkout was updated)."""
    if theirs == checkout:
        return (f"runs engine {theirs}, as the head's checkout does, but the coordinator still runs {coordinator} "
                "(it started before the update)",
                "restart the service on the head: deploy/stop-head.sh, then deploy/start-head.sh")
    return f"runs engine {theirs}, the head {coordinator}", "update that laptop's checkout to the head's commit"


class WorkerPool:
    """``engine``: the digest of the engine code workers must run, the coordinator's own."""

    def __init__(self, settings: PoolSettings, engine: str = DIGEST):
        self.settings = settings
        self.engine = engine
        self._workers: dict[str, _Worker] = {}
        self._queues: dict[str, deque[_Chunk]] = {}
        self._turns: deque[str] = deque()
        self._in_flight: dict[int, _Chunk] = {}
        self._wakeup = asyncio.Event()
        self._seconds_per_genome_bar = 5e-9  # refined from every answer
        self.evaluations_by_node: Counter[str] = Counter()  # genomes backtested per node id since start
        self.busy_seconds_by_node: Counter[str] = Counter()  # seconds its workers spent inside batches since start
        self._tasks: set[asyncio.Task] = set()

    def _spawn(self, coro) -> None:
        """Run a background task, holding a reference until it ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.refresh()
        for loop in (self._refresh_loop, self._dispatch_loop, self._deadline_loop):
            self._spawn(loop())

    def reconfigure(self, settings: PoolSettings) -> None:
        self.settings = settings
        self._wakeup.set()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_interval_s)
            with contextlib.suppress(Exception):  # a GCS hiccup must not kill the loop; next round retries
                await self.refresh()

    def placement(self, node: dict) -> tuple[str | None, int]:
        """(label, workers wanted) for a node from ``ray.nodes()``."""
        resources = node["Resources"]
        for label, count in self.settings.workers_per_label.items():
            if label in resources:
                return label, min(count, int(resources[label]))
        return None, int(resources.get("CPU", 0))

    async def refresh(self) -> None:
        """Forget workers on dead nodes, retire ones the placement no longer wants or refused long enough ago, start
        missing ones."""
        nodes = {n["NodeID"]: n for n in await asyncio.to_thread(ray.nodes) if n["Alive"]}
        for key, worker in list(self._workers.items()):
            if worker.node_id not in nodes:
                del self._workers[key]
            elif worker.refused and time.monotonic() - worker.refused_at > REFUSED_RETRY_S:
                self._retire(worker)
        for node_id, node in nodes.items():
            label, wanted = self.placement(node)
            here = [w for w in self._workers.values() if w.node_id == node_id and not w.retiring]
            fitting = [w for w in here if w.label == label]
            for worker in [w for w in here if w.label != label] + fitting[wanted:]:
                self._retire(worker)
            for _ in range(wanted - len(fitting)):
                self._add_worker(node_id, label)

    def _retire(self, worker: _Worker) -> None:
        """Stop giving work to a worker; kill it now if idle, else when its batch returns."""
        worker.retiring = True
        if not worker.busy:
            self._kill(worker)

    def _kill(self, worker: _Worker) -> None:
        self._workers = {k: w for k, w in self._workers.items() if w is not worker}
        with contextlib.suppress(Exception):
            ray.kill(worker.handle)

    def _add_worker(self, node_id: str, label: str | None) -> None:
        if label is not None:
            options = {"resources": {label: 1}}
        else:
            options = {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}
        handle = BacktestWorker.options(**options).remote(label)
        key = handle._actor_id.hex()
        self._workers[key] = worker = _Worker(handle, node_id, label)
        self._spawn(self._await_ready(key, worker))

    async def _await_ready(self, key: str, worker: _Worker) -> None:
        try:
            info = await worker.handle.info.remote()
        except WORKER_LOST:
            self._workers.pop(key, None)
            return
        worker.node_id, worker.pid, worker.versions = info["node_id"], info["pid"], info["versions"]
        theirs = info["versions"].get("engine")
        if theirs != self.engine:
            worker.refused, worker.refused_fix = engine_mismatch(theirs, self.engine, checkout_digest())
            worker.refused_at = time.monotonic()
            log.warning("worker %s on node %s refused: it %s; %s", worker.pid, worker.node_id[:8], worker.refused,
                        worker.refused_fix)
            return
        worker.ready = True
        self._wakeup.set()

    # ---- views -------------------------------------------------------------------------------------
    @property
    def ready_workers(self) -> int:
        return sum(1 for w in self._workers.values() if w.ready and not w.retiring)

    def workers(self) -> list[dict]:
        return [{"node_id": w.node_id, "label": w.label, "ready": w.ready and not w.retiring, "busy": w.busy,
                 "pid": w.pid, "versions": w.versions, "refused": w.refused, "refused_fix": w.refused_fix}
                for w in self._workers.values()]

    def all_refused(self) -> bool:
        """Every worker there is runs other engine code: none will take work until someone updates a checkout."""
        return bool(self._workers) and all(w.refused for w in self._workers.values())

    def none_ready(self) -> str:
        """What to tell a caller that found no ready worker, with the refusal if that is why."""
        message = "no worker is ready"
        refused = [w for w in self._workers.values() if w.refused]
        if refused:
            message += f"; {len(refused)} refused: each {refused[0].refused}; {refused[0].refused_fix}"
        return message

    async def trial(self, name: str, source: str, params: dict, limits: EvaluatorLimits) -> dict:
        """Try a would-be evaluator in one ready worker, an idle one if there is one (see ``BacktestWorker.trial``:
        its sandbox enforces ``limits``; the timeout here is for a worker that does not answer at all)."""
        ready = [w for w in self._workers.values() if w.ready and not w.retiring]
        if not ready:
            return {"ok": False, "error": "no worker is ready to try the evaluator; retry in a few seconds"}
        worker = min(ready, key=lambda w: w.busy)
        timeout_s = 2 * limits.batch_s + START_TIMEOUT_S  # a busy worker may first finish a batch of pushed code
        try:
            return await asyncio.wait_for(worker.handle.trial.remote(name, source, params, limits), timeout_s)
        except TimeoutError:
            return {"ok": False, "error": f"the worker trying it did not answer within {timeout_s:.0f} s"}

    async def call(self, method: str, *args, attempts: int = 3) -> Any:
        """One call of a ``BacktestWorker`` method beside the jobs' queues (``POST /v1/backtests``: one strategy's
        report, milliseconds of kernel time). It goes to an idle ready worker, kept from batches until it answers, else
        to a busy one, where it waits behind that worker's batch (about ``batch_target_s``). A worker lost, or silent
        past ``batch_timeout_s``, is replaced by another, ``attempts`` times in all; TimeoutError when none answered,
        or none was ready within READY_WAIT_S."""
        for _ in range(attempts):
            waited = 0.0
            while not (ready := [w for w in self._workers.values() if w.ready and not w.retiring]):
                if waited >= READY_WAIT_S:  # right after a (re)start the workers are still warming up
                    raise TimeoutError(f"waited {READY_WAIT_S:g} s: {self.none_ready()}")
                await asyncio.sleep(0.2)
                waited += 0.2
            worker = min(ready, key=lambda w: w.busy)
            reserved = not worker.busy
            worker.reserved = worker.reserved or reserved
            try:
                return await asyncio.wait_for(getattr(worker.handle, method).remote(*args),
                                              self.settings.batch_timeout_s)
            except WORKER_LOST:
                self._workers = {k: w for k, w in self._workers.items() if w is not worker}
            except TimeoutError:
                pass
            finally:
                if reserved:
                    worker.reserved = False
                    if worker.retiring and not worker.busy:
                        self._kill(worker)
                    self._wakeup.set()
        raise TimeoutError(f"{attempts} workers in turn were lost or did not answer within "
                           f"{self.settings.batch_timeout_s:g} s")

    async def memory(self) -> list[dict]:
        """Each ready worker's memory report (see ``BacktestWorker.memory``)."""
        ready = [w for w in self._workers.values() if w.ready and not w.retiring]
        return list(await asyncio.gather(*(w.handle.memory.remote() for w in ready)))

    # ---- evaluation --------------------------------------------------------------------------------
    def chunk_size(self, n_genomes: int, bars: int, folds: int = 1, keep: int = 0) -> int:
        """Genomes per call: ~batch_target_s of kernel time, but enough chunks of ``n_genomes`` to feed every
        worker, and few enough that the answer (the fitness, and the brief metrics if ``keep``) travels inline in
        Ray's reply (``INLINE_REPLY_BYTES``)."""
        by_time = math.ceil(self.settings.batch_target_s / max(self._seconds_per_genome_bar * bars, 1e-12))
        by_spread = math.ceil(n_genomes / max(1, self.ready_workers))
        if keep:
            room = INLINE_REPLY_BYTES - BriefMetrics.bytes_kept(folds, keep)
            by_reply = max(keep, room // BriefMetrics.BYTES_PER_GENOME)
        else:
            by_reply = INLINE_REPLY_BYTES // 8
        return max(1, min(by_time, by_spread, by_reply))

    async def evaluate(self, job: str, scoring: Scoring, genomes: np.ndarray, windows: list[Window],
                       on_progress: Callable[[int, int], None] | None = None,
                       sharing: int = 1, keep: int = 0) -> tuple[np.ndarray | None, np.ndarray]:
        """(metrics (n, folds, metrics), fitness) for every genome row on every fold window, computed by the pool;
        row i is genome row i. A job may have several calls under way at once (its validation searches, its
        islands). ``sharing``: how many populations of this size share the workers with this one, itself included (a
        job's validation searches running at once): each is cut for its share of the workers, so that all of them
        together give every worker some, in fewer, larger calls than if each were cut for every worker.

        The metrics are what a search reads of them (``engine.brief``): every metric of each batch's ``keep``
        fittest distinct genomes, NaN elsewhere; None if ``keep`` is 0, the fitness alone, all a search that keeps
        only its best needs. Small answers make fewer, larger calls.

        Workers score with exactly ``scoring``'s evaluator version; a batch whose scoring fails or passes a limit
        fails the call.
        """
        n = genomes.shape[0]
        bars = sum(w.bars for w in windows)
        out = np.empty((n, len(windows), N_METRICS)) if keep else None
        fitness = np.empty(n)
        if n == 0:
            return out, fitness
        count = math.ceil(n / self.chunk_size(n * sharing, bars, len(windows), keep))
        edges = [n * k // count for k in range(count + 1)]  # chunks as even as they can be
        loop = asyncio.get_running_loop()
        spans = [(w.start, w.end) for w in windows]
        chunks = [_Chunk(job, hi - lo, bars, "evaluate", (scoring, genomes[lo:hi], spans, keep), loop.create_future(),
                         lo) for lo, hi in itertools.pairwise(edges)]
        self._enqueue(job, chunks)
        done = 0
        try:
            for finished in asyncio.as_completed([c.future for c in chunks]):
                chunk, (brief, scores) = await finished
                hi = chunk.lo + chunk.genomes
                if out is not None:
                    brief.fill(out[chunk.lo:hi])
                fitness[chunk.lo:hi] = scores
                done += chunk.genomes
                if on_progress is not None:
                    on_progress(done, n)
        finally:
            self._forget(job, chunks)
        return out, fitness

    async def evolve(self, job: str, scoring: Scoring, epoch: IslandEpoch, windows: list[Window],
                     keep: int) -> EpochOutcome:
        """One island's epoch run by a worker of the pool (``BacktestWorker.evolve``): backtested, scored and bred
        there, in one call. Queued, resent and raced like any batch (an epoch's answer depends on its input alone)."""
        bars = sum(w.bars for w in windows)
        chunk = _Chunk(job, epoch.genomes, bars, "evolve",
                       (scoring, epoch, [(w.start, w.end) for w in windows], keep, job),
                       asyncio.get_running_loop().create_future(), memory=memory_key(job, epoch, epoch.start))
        self._enqueue(job, [chunk])
        try:
            _, (outcome,) = await chunk.future
        finally:
            self._forget(job, [chunk])
        return outcome

    def _enqueue(self, job: str, chunks: list[_Chunk], *, front: bool = False) -> None:
        if job not in self._queues:
            self._queues[job] = deque()
            self._turns.append(job)
        if front:
            self._queues[job].extendleft(reversed(chunks))
        else:
            self._queues[job].extend(chunks)
        self._wakeup.set()

    def _forget(self, job: str, chunks: list[_Chunk]) -> None:
        for chunk in chunks:
            if not chunk.future.done():
                chunk.future.cancel()
        queue = self._queues.get(job)
        if queue is not None:
            remaining = deque(c for c in queue if not c.future.done())
            if remaining:
                self._queues[job] = remaining
            else:
                del self._queues[job]
                self._turns.remove(job)

    def _next_chunk(self, worker: _Worker) -> _Chunk | None:
        """Round-robin over jobs with queued chunks; skips chunks already answered. Of a job's queue, ``worker`` takes
        first an island's epoch whose memory of keys it holds (that epoch then travels without it)."""
        for _ in range(len(self._turns)):
            job = self._turns[0]
            self._turns.rotate(-1)
            queue = self._queues.get(job)
            while queue and queue[0].future.done():
                queue.popleft()
            if queue:
                chunk = next((c for c in queue if c.memory in worker.memories and not c.future.done()), queue[0])
                queue.remove(chunk)
                return chunk
        return None

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while True:
                free = [w for w in self._workers.values() if w.ready and not w.retiring and not w.reserved
                        and w.calls < self.settings.calls_per_worker]
                if not free:
                    break
                worker = min(free, key=lambda w: w.calls)  # idle workers first, then a second batch each
                chunks = self._take(worker)
                if not chunks:
                    break
                self._spawn(self._run(worker, chunks))

    def _take(self, worker: _Worker) -> list[_Chunk]:
        """The chunks of ``worker``'s next call, marked as sent to it (none if every queue is empty)."""
        chunk = self._next_chunk(worker)
        if chunk is None:
            return []
        chunks = [chunk, *self._more_epochs(worker, chunk)]
        worker.calls += 1
        now = time.monotonic()
        for sent in chunks:
            sent.sent_at.append(now)
            self._in_flight[id(sent)] = sent
            if sent.method == "evolve":
                worker.epochs[sent.job] += 1
        return chunks

    def _more_epochs(self, worker: _Worker, first: _Chunk) -> list[_Chunk]:
        """Epochs of ``first``'s job to send in the same call as ``first`` (an epoch), taken from the queue: up to the
        worker's fair share of the job's epochs waiting and under way (their count over the ready workers', less those
        in its calls already), those whose memory it holds first, within ``batch_target_s`` of kernel time and while the
        call's argument and answer stay inline in Ray's messages. Nothing for a batch of ``evaluate``, or where workers
        outnumber the epochs. The search's last epochs go one per call: nothing follows them, so the job ends when the
        last call does, and small calls end closer together (at 400 x 10 on these 2 workers the service went from 85 to
        89-91 % of the in-process engine's throughput, docs/performance.md)."""
        queue = self._queues.get(first.job)
        if first.method != "evolve" or not queue or not first.args[1].continues:
            return []
        waiting = [c for c in queue if c.method == "evolve" and not c.future.done() and c.args[1].continues
                   and c.args[0] is first.args[0] and c.args[2:] == first.args[2:]]  # same scoring, windows, metrics
        under_way = sum(w.epochs[first.job] for w in self._workers.values())
        share = math.ceil((1 + len(waiting) + under_way) / max(1, self.ready_workers)) - worker.epochs[first.job]
        if share <= 1:  # the two laptops' usual case: nothing to weigh
            return []
        waiting.sort(key=lambda c: c.memory not in worker.memories)  # stable: queue order otherwise
        keep, folds = first.args[3], len(first.args[2])

        def cost(chunk: _Chunk) -> tuple[int, int, float]:
            """(argument bytes, answer bytes, kernel seconds) of one epoch sent to this worker."""
            out, back = wire_bytes(worker.epoch_arg(chunk.args[1], chunk.memory), keep, folds)
            return out, back, chunk.genomes * chunk.bars * self._seconds_per_genome_bar

        taken: list[_Chunk] = []
        argument, answer, kernel = cost(first)
        for chunk in waiting[:share - 1]:
            out, back, time_s = cost(chunk)
            if (kernel + time_s > self.settings.batch_target_s or argument + out > INLINE_REPLY_BYTES
                    or answer + back > INLINE_REPLY_BYTES):
                break
            taken.append(chunk)
            argument, answer, kernel = argument + out, answer + back, kernel + time_s
        for chunk in taken:
            queue.remove(chunk)
        return taken

    async def _run(self, worker: _Worker, chunks: list[_Chunk]) -> None:
        """One call to ``worker``: a batch of ``evaluate``, or one or more islands' epochs (``evolve``), each answer
        set on its own chunk's future."""
        first = chunks[0]
        scoring, *rest = first.args
        if first.method == "evolve":
            rest[0] = [worker.epoch_arg(chunk.args[1], chunk.memory) for chunk in chunks]
        try:
            *answer, seconds = await getattr(worker.handle, first.method).remote(worker.scoring_arg(scoring), *rest)
        except UnknownScoring:  # the worker forgot it (or its dataset): send it whole
            worker.scorings.pop(scoring.key, None)
            self._requeue(chunks)
        except UnknownMemory:  # the worker forgot an island's memory: send the epochs whole
            for chunk in chunks:
                worker.memories.pop(chunk.memory, None)
            self._requeue(chunks)
        except WORKER_LOST:
            self._workers = {k: w for k, w in self._workers.items() if w is not worker}
            self._requeue(chunks)
        except Exception as exc:  # the batch itself failed (bad input): the job fails with this error
            for chunk in chunks:
                if not chunk.future.done():
                    chunk.future.set_exception(exc)
        else:
            worker.holds(scoring)
            self.evaluations_by_node[worker.node_id] += sum(chunk.genomes for chunk in chunks)
            self.busy_seconds_by_node[worker.node_id] += seconds
            if first.method == "evaluate":  # an epoch's seconds include breeding
                self._seconds_per_genome_bar = (0.8 * self._seconds_per_genome_bar
                                                + 0.2 * seconds / (first.genomes * first.bars))
                answers = [tuple(answer)]
            else:
                answers = [(outcome,) for outcome in answer[0]]
            for chunk, result in zip(chunks, answers, strict=True):
                if chunk.memory is not None:
                    worker.ran(chunk.job, chunk.args[1])
                if not chunk.future.done():
                    chunk.future.set_result((chunk, result))
        finally:
            worker.calls -= 1
            if first.method == "evolve":
                worker.epochs[first.job] -= len(chunks)
                if worker.epochs[first.job] <= 0:
                    del worker.epochs[first.job]  # a service runs for months: no entry per job it ever ran
            if worker.retiring and not worker.busy:
                self._kill(worker)
            for chunk in chunks:
                if chunk.future.done():
                    self._in_flight.pop(id(chunk), None)
            self._wakeup.set()

    def _requeue(self, chunks: list[_Chunk]) -> None:
        """Put lost or late chunks first in their job's queue (recreated if the job's other calls emptied it)."""
        for chunk in reversed(chunks):
            if not chunk.future.done():
                self._enqueue(chunk.job, [chunk], front=True)

    async def _deadline_loop(self) -> None:
        """Resend chunks that have been out too long (a sleeping laptop is declared dead only later)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for key, chunk in list(self._in_flight.items()):
                if chunk.future.done():
                    self._in_flight.pop(key, None)
                elif now - chunk.sent_at[-1] > self.settings.batch_timeout_s:
                    chunk.sent_at.append(now)
                    self._requeue([chunk])

    def drop(self, job: str) -> None:
        """Forget a job's chunks, queued and in flight (cancellation): its ``evaluate`` calls end at once, whatever
        the workers holding its batches are doing (hung, asleep, dead); calls already running finish and are
        ignored, and a batch lost with its worker is not sent again."""
        in_flight = [chunk for chunk in self._in_flight.values() if chunk.job == job]
        for chunk in [*self._queues.pop(job, deque()), *in_flight]:
            if not chunk.future.done():
                chunk.future.cancel()
        if job in self._turns:
            self._turns.remove(job)
