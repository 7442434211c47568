"""Sandbox: the only place pushed evaluator code runs, a small child process under a memory and a time limit.

Why a child process: a pushed module may hang, allocate without end or call ``sys.exit``. In the coordinator that
took the service down; in a worker it held the worker forever. A Ray worker's virtual size is ~9 GB, so an
address-space limit on the worker itself cannot work: the child limits itself (``RLIMIT_DATA``: everything numpy
or Python allocate) before it reads any code, and its parent watches the child's resident size (which also
catches shared mappings, and is the only limit macOS enforces) and the wall clock, and kills and replaces the
child when one is passed.

The child is long-lived, one per process that scores pushed evaluators, started on first use: it imports only
numpy and ``engine.evaluator`` (~0.3 s, ~35 MB), compiles each version once and answers one call per fold over a
socket pair. It runs as the service's user: these are limits against runaway code, not a security boundary.
Built-in evaluators are trusted and score in-process, on the hot path.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

import numpy as np
import psutil

from engine.evaluator import Evaluator, EvaluatorError, EvaluatorSource

if TYPE_CHECKING:
    from serve_app.config import EvaluatorLimits

START_TIMEOUT_S = 60.0  # a fresh child importing numpy on a busy laptop; not counted against the time limit
WATCH_S = 0.1  # how often the parent looks at the child's resident size while it waits for an answer
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


class _Breach(Exception):
    """The child passed a limit or died; the message says which, for the evaluator's error."""


class Sandbox:
    """A child process that runs pushed evaluators for this process; one call at a time (thread-safe)."""

    def __init__(self):
        self._lock = threading.RLock()
        self._child: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._watched: psutil.Process | None = None  # the child, for its resident size
        self._memory_mb = 0  # the limit the running child set on itself
        self._loaded: set[str] = set()  # versions the running child has compiled
        self._limits: EvaluatorLimits | None = None
        self._deadline = 0.0

    @contextlib.contextmanager
    def limited(self, limits: EvaluatorLimits):
        """Calls inside the block run under ``limits`` and share one deadline: one batch, or one trial."""
        with self._lock:
            self._limits, self._deadline = limits, time.monotonic() + limits.batch_s
            try:
                yield
            finally:
                self._limits = None

    def call(self, evaluator: EvaluatorSource, op: str, *args):
        """``getattr(Evaluator(...), op)(*args)`` in the child; raises EvaluatorError for the evaluator's errors
        and for a passed limit (after replacing the child)."""
        with self._lock:
            limits = self._limits
            if limits is None:
                raise RuntimeError("Sandbox.call outside Sandbox.limited: pushed code never runs without limits")
            try:
                if self._child is None or self._memory_mb != limits.memory_mb:
                    self._deadline += self._start(limits.memory_mb)
                spec = None if evaluator.version in self._loaded else (evaluator.name, evaluator.source,
                                                                       evaluator.params)
                reply = self._ask((op, evaluator.version, evaluator.filename, spec, args), limits)
            except _Breach as exc:
                self._stop()
                raise EvaluatorError(f"{exc}; its sandbox process was replaced", filename=evaluator.filename) from None
            if reply[0] == "ok":
                self._loaded.add(evaluator.version)
                return reply[1]
            _, message, filename, line, out_of_memory = reply
            if out_of_memory:  # the child may be left in a poor state: start afresh
                self._stop()
                message += f"; over its memory limit of {limits.memory_mb} MB (user_config evaluator_limits.memory_mb)"
            raise EvaluatorError(message, filename=filename, line=line)

    def _ask(self, request: tuple, limits: EvaluatorLimits) -> tuple:
        """Send a request and return the child's reply, watching the deadline and the child's resident size."""
        try:
            self._conn.send(request)
            while not self._conn.poll(max(0.0, min(WATCH_S, self._deadline - time.monotonic()))):
                if time.monotonic() >= self._deadline:
                    raise _Breach(f"took over {limits.batch_s:g} s, its time limit (user_config "
                                  "evaluator_limits.batch_s)")
                if self._watched.memory_info().rss > limits.memory_mb * 2**20:
                    raise _Breach(f"used over {limits.memory_mb} MB, its memory limit (user_config "
                                  "evaluator_limits.memory_mb)")
            return self._conn.recv()
        except (EOFError, OSError, psutil.NoSuchProcess):  # it exited, or closed or garbled its end of the pipe
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(1.0)
            raise _Breach(f"made its sandbox process exit (code {self._child.returncode})") from None

    def _start(self, memory_mb: int) -> float:
        """A fresh child limited to ``memory_mb``; returns the seconds it took to be ready."""
        self._stop()
        started = time.monotonic()
        ours, theirs = multiprocessing.Pipe()
        command = [sys.executable, "-m", "serve_app.sandbox", str(theirs.fileno()), str(memory_mb), str(os.getpid())]
        self._child = subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                       env={**os.environ, **ONE_THREAD})
        theirs.close()
        self._conn, self._memory_mb, self._watched = ours, memory_mb, psutil.Process(self._child.pid)
        try:
            if not ours.poll(START_TIMEOUT_S):
                raise _Breach(f"its sandbox process did not start within {START_TIMEOUT_S:g} s")
            ours.recv()
        except (EOFError, OSError):
            raise _Breach(f"its sandbox process failed to start (exit code {self._child.wait()})") from None
        return time.monotonic() - started

    def _stop(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child.wait()
            self._conn.close()
        self._child = self._conn = None
        self._loaded.clear()

    def close(self) -> None:
        with self._lock:
            self._stop()


class SandboxedEvaluator(EvaluatorSource):
    """A pushed evaluator: checked here without running it (version, parameters), scored in a ``Sandbox``."""

    def __init__(self, sandbox: Sandbox, name: str, source: str, params: dict | None = None):
        super().__init__(name, source, params)
        self.sandbox = sandbox

    def fitness(self, metrics: np.ndarray) -> np.ndarray:
        return self.sandbox.call(self, "fitness", metrics)

    def check(self, metrics: np.ndarray) -> None:
        self.sandbox.call(self, "check", metrics)


# ---- the child ---------------------------------------------------------------------------------------------------
def _exit_with(parent: int) -> None:
    """End the child once the process that started it is gone: a killed worker must not leave it spinning."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _reply(evaluators: dict[str, Evaluator], op: str, version: str, filename: str, spec: tuple | None,
           args: tuple) -> tuple:
    try:
        if spec is not None:
            evaluators[version] = Evaluator(*spec)
        return "ok", getattr(evaluators[version], op)(*args)
    except EvaluatorError as exc:
        error = exc
    except BaseException as exc:  # SystemExit, KeyboardInterrupt: the evaluator's code ends nothing here
        error = EvaluatorError.raised(exc, filename)
    return "error", error.message, error.filename, error.line, error.out_of_memory


def _serve(fd: int, memory_mb: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal running the service is for the service
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    conn = Connection(fd)
    conn.send(("ready",))
    evaluators: dict[str, Evaluator] = {}
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        conn.send(_reply(evaluators, *request))


if __name__ == "__main__":
    _serve(*map(int, sys.argv[1:]))
