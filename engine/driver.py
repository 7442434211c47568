"""One generation loop for every place a job's search runs.

``engine.miner.mine`` (islands run in this process) and the service's coordinator (islands run on its worker pool)
both drive a ``MiningSession`` with ``drive_generations`` and each validation search with ``drive_search``. They
supply only where an island's epoch runs and what becomes of its outcome (events, checkpoints, the job store), so the
order of a job's events, the points where a stop takes effect and the overlap of one epoch's bookkeeping with the
next one's evaluation are written once, here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:  # engine.miner drives its in-process jobs with this module
    from engine import events as ev
    from engine.islands import EpochOutcome, IslandEpoch
    from engine.miner import MiningSession, SearchRun

T = TypeVar("T")
# Telling an epoch of 1,000 genomes takes a few milliseconds of the event loop; a larger one goes to a thread, so that
# an event loop keeps serving meanwhile (docs/performance.md)
INLINE_TELL_GENOMES = 1_000
# fold metrics (n, folds, metrics), fitness if scored already; a validation search scored on the pool gets its fitness
# alone (metrics None): it keeps only its best
Scored = tuple[np.ndarray | None, np.ndarray | None]
Evaluate = Callable[[np.ndarray], Awaitable[Scored]]


class Stopped(Exception):
    """The job was asked to stop (cancelled) between batches or generations."""


class GenerationHooks(Protocol):
    """What a driver of the real search supplies."""

    def evolve(self, epoch: IslandEpoch) -> Awaitable[EpochOutcome]:
        """Run one island's epoch (``MiningSession.run_epoch``, here or on a worker); raise ``Stopped`` to stop
        between its generations. Every island's epoch is under way at once."""

    def announce(self, generation: int) -> None:
        """The epoch starting with ``generation`` is under way: say that the generation started (after the last
        epoch's record)."""

    def islands_done(self, generation: int, evaluated: int) -> None:
        """Islands holding ``evaluated`` genomes have run the epoch starting with ``generation``."""

    async def record(self, bests: list[ev.GenerationBest], evaluated: int) -> None:
        """An epoch's outcome, each generation's best (each but the first started meanwhile, ``evaluated`` genomes
        each): emit it, checkpoint or store it. The next epoch is already being evaluated meanwhile."""

    def stopping(self) -> bool:
        """Whether the job was asked to stop; polled between epochs."""


async def drive_generations(session: MiningSession, hooks: GenerationHooks) -> None:
    """Run the search's remaining generations, each island an epoch (its generations up to a migration) at a time,
    or raise ``Stopped``.

    No island waits for the whole epoch: its next epoch goes out as soon as it and the island before it on the ring
    (whose best it receives) are back, so a worker that finishes early, or a faster laptop, takes the next epoch at
    once; at most one epoch ahead of the one being told. An epoch is told to the session, and recorded, once every
    island is back from it, in order. Deterministic whatever the timing: an island's epoch depends only on its own
    last one and its sender's (``engine.islands``).
    """
    running: dict[asyncio.Future, IslandEpoch] = {}
    try:
        if hooks.stopping():
            raise Stopped
        if session.done:
            return
        count, sizes = len(session.search.islands), session.search.sizes
        current: dict[int, IslandEpoch] = {}  # each island's last epoch sent
        back: dict[int, dict[int, EpochOutcome]] = {}  # by epoch start, each island's outcome
        evaluated: dict[int, int] = {}  # by epoch start, genomes of the islands back

        def send(epoch: IslandEpoch) -> None:
            current[epoch.index] = epoch
            running[_start(island(epoch))] = epoch

        async def island(epoch: IslandEpoch) -> None:
            """One island's epoch, its progress told and its (and its receiver's) next epoch sent as soon as it is
            back: in its own task, so that in-process, where each runs to its end once started, that comes before
            the next island runs."""
            outcome = await hooks.evolve(epoch)
            back.setdefault(epoch.start, {})[epoch.index] = outcome
            evaluated[epoch.start] = evaluated.get(epoch.start, 0) + sizes[epoch.index]
            if epoch.start == session.generation:  # an epoch ahead's progress is told when it is announced
                hooks.islands_done(epoch.start, evaluated[epoch.start])
            for index in (epoch.index, (epoch.index + 1) % count):
                send_next(index)

        def send_next(index: int) -> None:
            """Island ``index``'s next epoch, if it and its sender are back from its last one, and that one is the
            epoch being told or the one after (no island runs further ahead)."""
            last, sender = current[index], (index - 1) % count
            outcomes = back.get(last.start, {})
            if (index not in outcomes or sender not in outcomes or last.stop > session.search.epoch_stop
                    or hooks.stopping()):
                return
            following = session.next_island_epoch(current[index], outcomes[index], outcomes[sender])
            if following is not None:
                send(following)

        for index in range(count):
            send(session.island_epoch(index))
        hooks.announce(session.generation)
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                running.pop(future)
                future.result()  # an island's failure (or stop) ends the search
            while len(back.get(session.generation, ())) == count:
                outcomes = back.pop(session.generation)
                bests = await _tell(session, [outcomes[index] for index in range(count)])
                await hooks.record(bests, session.settings.population)
                if hooks.stopping():
                    raise Stopped
                if not session.done:
                    hooks.announce(session.generation)
                    if session.generation in evaluated:
                        hooks.islands_done(session.generation, evaluated[session.generation])
                    for index in range(count):  # islands held back for running too far ahead
                        send_next(index)
        if not session.done:  # a stop held the next epochs back
            raise Stopped
    finally:
        for future in running:
            future.cancel()


async def _tell(session: MiningSession, outcomes: list[EpochOutcome]) -> list[ev.GenerationBest]:
    """Tell an epoch: here if small (it blocks the loop a few milliseconds at most, and a hand-off to a thread costs
    CPU that the workers beside the coordinator need), else in a thread."""
    if session.settings.population <= INLINE_TELL_GENOMES:
        return session.tell_epoch(outcomes)
    return await asyncio.to_thread(session.tell_epoch, outcomes)


def _start(evaluation: Awaitable[T]) -> asyncio.Future:
    future = asyncio.ensure_future(evaluation)
    future.add_done_callback(lambda f: f.cancelled() or f.exception())  # its error read, even if never awaited
    return future


async def drive_search(run: SearchRun, evaluate: Evaluate, stopping: Callable[[], bool]) -> None:
    """Run a validation search (random baseline or a shuffled copy) to its end, or raise ``Stopped``."""
    while not run.done:
        if stopping():
            raise Stopped
        metrics, fitness = await evaluate(run.population())
        await asyncio.to_thread(run.tell, metrics, fitness)


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a driver coroutine to its end from synchronous code (``engine.miner.mine``).

    On a private event loop, not ``asyncio.run``: that would install a SIGINT handler that only cancels the task, so
    Ctrl-C would wait for the generation being evaluated, and it cannot be called where a loop already runs (a
    notebook, an async app). From such a thread the coroutine runs in a one-off thread instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_on_private_loop(coroutine)
    with ThreadPoolExecutor(1, thread_name_prefix="miner-driver") as thread:
        return thread.submit(_run_on_private_loop, coroutine).result()


def _run_on_private_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        try:
            left = asyncio.all_tasks(loop)  # e.g. a next generation sent when Ctrl-C came
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
