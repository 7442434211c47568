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
Scored = tuple[np.ndarray, np.ndarray | None]  # fold metrics (n, folds, metrics), fitness if scored already
Evaluate = Callable[[np.ndarray], Awaitable[Scored]]


class Stopped(Exception):
    """The job was asked to stop (cancelled) between batches or generations."""


class GenerationHooks(Protocol):
    """What a driver of the real search supplies."""

    def evaluate(self, population: np.ndarray) -> Awaitable[Scored]:
        """Evaluate the generation under way (``session.generation``); raise ``Stopped`` to stop between batches."""

    def announce(self, generation: int) -> None:
        """The generation was sent for evaluation: say that it started."""

    async def record(self, best: ev.GenerationBest, evaluated: int) -> None:
        """A generation's outcome (its best, ``evaluated`` genomes): emit it, checkpoint or store it. The next
        generation is already being evaluated meanwhile."""

    def stopping(self) -> bool:
        """Whether the job was asked to stop; polled between generations."""


async def drive_generations(session: MiningSession, hooks: GenerationHooks) -> None:
    """Run the search's remaining generations, or raise ``Stopped``.

    The next generation is sent for evaluation before the last one is recorded, so workers are not idle while a
    store commits. Deterministic whatever the timing: the next population depends only on the told generation.
    """
    in_flight: asyncio.Future | None = None
    try:
        if hooks.stopping():
            raise Stopped
        if not session.done:
            population = session.population()
            in_flight = _start(hooks.evaluate(population))
            hooks.announce(session.generation)
        while in_flight is not None:
            metrics, fitness = await in_flight
            # GA work (breeding: tens of ms at the largest populations) in a thread: an event loop keeps serving
            best = await asyncio.to_thread(session.tell_generation, population, metrics, fitness)
            evaluated, in_flight = len(population), None
            if not session.done and not hooks.stopping():
                population = session.population()
                in_flight = _start(hooks.evaluate(population))
            await hooks.record(best, evaluated)
            if hooks.stopping():
                raise Stopped
            if in_flight is not None:
                hooks.announce(session.generation)
    finally:
        if in_flight is not None:
            in_flight.cancel()


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
