"""One generation loop for every place a job's search runs.

``engine.miner.mine`` (batches in this process) and the service's coordinator (batches on its worker pool) both drive
a ``MiningSession`` with ``drive_generations`` and each validation search with ``drive_search``. They supply only
where a generation is evaluated and what becomes of its outcome (events, checkpoints, the job store), so the order
of a job's events, the points where a stop takes effect and the overlap of one generation's bookkeeping with the
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
    from engine.miner import MiningSession, SearchRun

T = TypeVar("T")
# Telling and breeding 1,000 genomes takes about 4 ms of the event loop; handing a piece to a thread cost the
# service's coordinator 0.3-1.3 ms of CPU more per piece of 250 or 100 genomes (docs/performance.md, "Telling small
# pieces here").
INLINE_TELL_GENOMES = 1_000
# fold metrics (n, folds, metrics), fitness if scored already; a validation search scored on the pool gets its fitness
# alone (metrics None): it keeps only its best
Scored = tuple[np.ndarray | None, np.ndarray | None]
Evaluate = Callable[[np.ndarray], Awaitable[Scored]]


class Stopped(Exception):
    """The job was asked to stop (cancelled) between batches or generations."""


class GenerationHooks(Protocol):
    """What a driver of the real search supplies."""

    piece_genomes: int
    """Evaluate a generation in pieces of consecutive islands holding at least this many genomes, each piece's next
    generation going out as soon as it is bred: on a worker pool, enough pieces for every worker to hold a queued
    one (no worker waits for the generation's last batch) and no more (every call costs a round trip); in this
    process, the whole generation, as one piece keeps every thread busy anyway. The kernel's time per genome does
    not depend on the batch: 25 genomes take per genome what 400 do."""

    def evaluate(self, rows: np.ndarray, generation: int) -> Awaitable[Scored]:
        """Evaluate ``rows``, the islands of ``generation`` in one piece; raise ``Stopped`` to stop between
        batches. Calls for several pieces, and for the next generation's first islands, are under way at once."""

    def announce(self, generation: int) -> None:
        """The generation was sent for evaluation: say that it started."""

    async def record(self, best: ev.GenerationBest, evaluated: int) -> None:
        """A generation's outcome (its best, ``evaluated`` genomes): emit it, checkpoint or store it. The next
        generation is already being evaluated meanwhile; no island of it is told before this returns."""

    def stopping(self) -> bool:
        """Whether the job was asked to stop; polled between islands and generations."""


async def drive_generations(session: MiningSession, hooks: GenerationHooks) -> None:
    """Run the search's remaining generations, or raise ``Stopped``.

    A generation goes out in pieces of whole islands (``piece_genomes``). Islands are told in order, and a piece's
    next generation is sent for evaluation as soon as it is bred, while the pieces after it are still evaluated or
    told, so the workers are fed through breeding and through the store's commits (``record``). Deterministic
    whatever the timing: an island's next genomes depend only on what was told before them, in a fixed order
    (``GeneticSearch.tell_island``).
    """
    pieces = island_pieces(session.search.sizes, hooks.piece_genomes)
    in_flight: list[asyncio.Future] = []
    sent: list[asyncio.Future] = []  # the next generation's islands sent so far
    try:
        if hooks.stopping():
            raise Stopped
        if session.done:
            return
        generation = session.generation
        in_flight = [_start(hooks.evaluate(session.island_rows(piece), generation)) for piece in pieces]
        hooks.announce(generation)
        while in_flight:
            breeds = generation + 1 < session.settings.generations
            for piece, future in zip(pieces, in_flight, strict=False):
                metrics, fitness = await future
                best = await _tell(session, piece, metrics, fitness)
                if breeds and not hooks.stopping():
                    sent.append(_start(hooks.evaluate(session.island_rows(piece), generation + 1)))
            in_flight, sent = sent, []
            await hooks.record(best, session.settings.population)
            if hooks.stopping():
                raise Stopped
            generation += 1
            if in_flight:
                hooks.announce(generation)
    finally:
        for future in in_flight + sent:
            future.cancel()


async def _tell(session: MiningSession, piece: range, metrics: np.ndarray | None,
                fitness: np.ndarray | None) -> ev.GenerationBest | None:
    """Tell a piece's islands (and breed them). A large piece in a thread, so that an event loop keeps serving
    meanwhile; one of up to ``INLINE_TELL_GENOMES`` here: it blocks the loop a few milliseconds at most, and the
    hand-off to a thread costs CPU that the workers beside the coordinator need."""
    if sum(session.search.sizes[index] for index in piece) <= INLINE_TELL_GENOMES:
        return session.tell_islands(piece, metrics, fitness)
    return await asyncio.to_thread(session.tell_islands, piece, metrics, fitness)


def island_pieces(sizes: list[int], least: int) -> list[range]:
    """Consecutive islands grouped into pieces of at least ``least`` genomes (a short remainder joins the last)."""
    pieces: list[range] = []
    start, held = 0, 0
    for index, size in enumerate(sizes):
        held += size
        if held >= least:
            pieces.append(range(start, index + 1))
            start, held = index + 1, 0
    if start < len(sizes):
        pieces[-1:] = [range(pieces[-1].start if pieces else 0, len(sizes))]
    return pieces


def _start(evaluation: Awaitable[Scored]) -> asyncio.Future:
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
