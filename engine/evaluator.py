"""Evaluators: small Python modules that turn the metrics matrix into one fitness per genome.

An evaluator module defines

    PARAMS = {"drawdown_limit": 0.25}    # optional: parameter names and defaults
    def score(m, **params):              # m.trade_z, m.trades, ... are arrays, one value per genome
        return m.trade_z - ...           # one float per genome, higher is better

``m`` exposes every column of ``engine.layout.METRICS`` by name (and the raw matrix as ``m.matrix``), for one
training fold at a time: ``engine.scoring`` aggregates the folds and applies the job's min_trades rule.
The module may use numpy and numba. ``PARAMS`` must be a literal dict: it is read from the source, not by
running it. Its version id is ``name@`` + a content hash of its source and parameters: a result names the exact
scoring that produced it, and ``EvaluatorSource`` computes it without running any of the module (the service
runs pushed modules only in its sandbox processes, ``serve_app/sandbox.py``). Built-ins live in
``engine/evaluators/`` and load through the same code as modules pushed to the service.
"""

from __future__ import annotations

import ast
import hashlib
import json
import traceback
from importlib import resources

import numpy as np

from engine import layout as L

DEFAULT_EVALUATOR = "balanced"


def search_ranked(fitness: np.ndarray) -> np.ndarray:
    """Fitness as every part of the search ranks it (an evaluator's scores, selection, the hall of fame, a batch's
    brief): non-finite values (an evaluator's NaN or inf) as -inf, below everything else. Here, not in
    ``engine.scoring``, because that module builds on this one."""
    return np.where(np.isfinite(fitness), fitness, -np.inf)


class EvaluatorError(ValueError):
    """An evaluator that cannot be used, with where (file, line) and why."""

    def __init__(self, message: str, *, filename: str | None = None, line: int | None = None,
                 out_of_memory: bool = False):
        where = f"{filename}, line {line}: " if filename and line else f"{filename}: " if filename else ""
        super().__init__(where + message)
        self.filename, self.line, self.message, self.out_of_memory = filename, line, message, out_of_memory

    @classmethod
    def raised(cls, exc: BaseException, filename: str) -> EvaluatorError:
        """What the evaluator's code raised, at its line in the evaluator's source."""
        return cls(f"{type(exc).__name__}: {exc}", filename=filename, line=_origin(exc, filename),
                   out_of_memory=isinstance(exc, MemoryError))


class MetricsView:
    """Columns of a metrics matrix by name: ``m.sharpe`` is ``matrix[:, M_SHARPE]``."""

    def __init__(self, matrix: np.ndarray):
        self.matrix = matrix

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.matrix[:, L.METRICS.index(name)]
        except ValueError:
            raise AttributeError(f"no metric '{name}'; metrics are: {', '.join(L.METRICS)}") from None


def builtin_sources() -> dict[str, str]:
    """name -> source of the evaluators shipped in engine/evaluators/."""
    folder = resources.files("engine.evaluators")
    return {entry.name.removesuffix(".py"): entry.read_text() for entry in folder.iterdir()
            if entry.name.endswith(".py") and not entry.name.startswith("_")}


def _origin(exc: BaseException, filename: str) -> int | None:
    """The line of the evaluator's own source where ``exc`` happened, if it did."""
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        return exc.lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return frames[-1].lineno if frames else None


def _declared_params(tree: ast.Module, filename: str) -> dict:
    """The module's ``PARAMS`` read from its syntax tree, so a version id and its parameters are known without
    running the module (the service never runs pushed code where it keeps its state)."""
    assigned = [node for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
                and any(isinstance(t, ast.Name) and t.id == "PARAMS"
                        for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))]
    if not assigned:
        return {}
    node = assigned[-1]
    try:
        params = ast.literal_eval(node.value) if len(assigned) == 1 and node.value is not None else None
        json.dumps(params)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        params = None
    if not isinstance(params, dict) or not all(isinstance(key, str) for key in params):
        raise EvaluatorError("PARAMS must be a dict of parameter names to default values, assigned once at the "
                             "top level as a literal (it is read without running the module)",
                             filename=filename, line=node.lineno)
    return params


class EvaluatorSource:
    """An evaluator module checked without running it: it compiles, its ``PARAMS`` is a literal dict, the
    parameters asked for exist; with its resolved parameters and version id."""

    def __init__(self, name: str, source: str, params: dict | None = None):
        self.name, self.source = name, source
        self.filename = f"<evaluator {name}>"
        try:
            self.code = compile(source, self.filename, "exec")
            tree = ast.parse(source, self.filename)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:  # ValueError: a NUL byte
            raise EvaluatorError.raised(exc, self.filename) from None
        defaults = _declared_params(tree, self.filename)
        unknown = sorted(set(params or {}) - set(defaults))
        if unknown:
            raise EvaluatorError(f"unknown parameter(s) {', '.join(unknown)}; '{name}' takes: "
                                 f"{', '.join(defaults) or 'none'}")
        # numbers are floats whatever their spelling (30, 30.0, JSON), so equal settings hash equally
        self.params = {key: float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
                       for key, value in {**defaults, **(params or {})}.items()}
        payload = source + json.dumps(self.params, sort_keys=True)
        self.version = f"{name}@{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


class Evaluator(EvaluatorSource):
    """One evaluator module, run in this process: for trusted code (the built-ins, the in-process engine, the
    service's sandbox process). ``score`` gets the parameters resolved from the source's ``PARAMS``."""

    def __init__(self, name: str, source: str, params: dict | None = None):
        super().__init__(name, source, params)
        namespace: dict = {"__name__": f"miner_evaluator_{name}"}
        try:
            exec(self.code, namespace)
        except Exception as exc:
            raise EvaluatorError.raised(exc, self.filename) from None
        self._score = namespace.get("score")
        if not callable(self._score):
            raise EvaluatorError("the module defines no score(m, **params) function", filename=self.filename)

    def _call(self, metrics: np.ndarray) -> np.ndarray:
        try:
            with np.errstate(all="ignore"):  # NaN and inf are dealt with below, not printed as warnings
                scores = self._score(MetricsView(metrics), **self.params)
        except Exception as exc:
            raise EvaluatorError.raised(exc, self.filename) from None
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (metrics.shape[0],):
            raise EvaluatorError(f"score returned shape {scores.shape}, expected ({metrics.shape[0]},): "
                                 "one fitness per genome", filename=self.filename)
        return scores

    def fitness(self, metrics: np.ndarray) -> np.ndarray:
        """Scores as the search ranks them (``search_ranked``): a strategy the evaluator cannot score ranks last."""
        return search_ranked(self._call(metrics))

    def check(self, metrics: np.ndarray) -> None:
        """Strict trial run: every score must be finite (used before an evaluator goes live)."""
        scores = self._call(metrics)
        bad = np.flatnonzero(~np.isfinite(scores))
        if bad.size:
            raise EvaluatorError(f"score returned {scores[bad[0]]} for {bad.size} of {scores.size} sample genomes; "
                                 "every fitness must be a finite number", filename=self.filename)


def get_evaluator(name: str = DEFAULT_EVALUATOR, **params) -> Evaluator:
    """A built-in evaluator by name."""
    sources = builtin_sources()
    if name not in sources:
        raise EvaluatorError(f"unknown evaluator '{name}'; built-in evaluators: {', '.join(sorted(sources))}")
    return Evaluator(name, sources[name], params)
