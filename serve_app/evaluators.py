"""EvaluatorRegistry: every evaluator version the service knows, which one is the default, and a
trial run in one worker before any version goes live.

Versions are stored in the JobStore (a job pins one, and must find it again after a restart). Workers
receive a version as (version id, ObjectRef of its source) and load it once, on first use; nothing
restarts when a version is added. Pushed source never runs here (the coordinator, or the ingress): it is
checked without running it (``EvaluatorSource``: syntax, PARAMS, version id), tried and scored in the workers'
sandbox processes; the few scores the coordinator needs for a result come from its own sandbox process.
"""

from __future__ import annotations

import json

import ray

from client.models import EvaluatorInfo
from engine.evaluator import DEFAULT_EVALUATOR, Evaluator, EvaluatorError, EvaluatorSource, builtin_sources
from serve_app.errors import InvalidData, NotFound, shown
from serve_app.sandbox import Sandbox, SandboxedEvaluator
from serve_app.store import JobStore

DEFAULT_KEY = "default_evaluator"


class EvaluatorRegistry:
    def __init__(self, store: JobStore):
        self.store = store
        self.sandbox = Sandbox()  # scores a finished job's folds for pushed versions; started on first use
        self._refs: dict[str, ray.ObjectRef] = {}
        self._compiled: dict[str, Evaluator | SandboxedEvaluator] = {}
        shipped = builtin_sources()
        self._trusted = set(shipped.values())  # shipped code, with any parameters: runs in-process everywhere
        for name, source in shipped.items():
            self._save(Evaluator(name, source), builtin=True)
        if self.store.get_setting(DEFAULT_KEY) is None:
            self.set_default(self.latest(DEFAULT_EVALUATOR)["version"])

    # ---- records -------------------------------------------------------------------------------------
    def _save(self, evaluator: EvaluatorSource, builtin: bool = False) -> dict:
        if self.store.get_evaluator(evaluator.version) is None:
            self.store.put_evaluator(evaluator.version, evaluator.name, evaluator.source,
                                     json.dumps(evaluator.params), builtin)
        return self.store.get_evaluator(evaluator.version)

    def latest(self, name: str) -> dict:
        record = self.store.latest_evaluator(name)
        if record is None:
            known = ", ".join(sorted({r["name"] for r in self.store.list_evaluators()}))
            raise NotFound(f"unknown evaluator '{shown(name)}'; known evaluators: {known}")
        return record

    def resolve(self, name_or_version: str | None) -> dict:
        """None -> the default; 'name@hash' -> that version; 'name' -> its latest version."""
        if not name_or_version:
            return self.store.get_evaluator(self.default_version)
        if "@" in name_or_version:
            record = self.store.get_evaluator(name_or_version)
            if record is None:
                raise NotFound(f"unknown evaluator version '{shown(name_or_version)}'")
            return record
        return self.latest(name_or_version)

    def compiled(self, version: str) -> Evaluator | SandboxedEvaluator:
        """The version for a job's session: shipped code runs here, pushed code only in ``self.sandbox`` (the
        batches themselves are scored in the workers)."""
        if version not in self._compiled:
            record = self.store.get_evaluator(version)
            kind = (Evaluator if record["source"] in self._trusted else
                    lambda *spec: SandboxedEvaluator(self.sandbox, *spec))
            self._compiled[version] = kind(record["name"], record["source"], json.loads(record["params"]))
        return self._compiled[version]

    def ref(self, version: str) -> ray.ObjectRef:
        """(name, source, params, trusted: shipped code) of a version in the object store, put once."""
        if version not in self._refs:
            record = self.store.get_evaluator(version)
            self._refs[version] = ray.put((record["name"], record["source"], json.loads(record["params"]),
                                           record["source"] in self._trusted))
        return self._refs[version]

    @property
    def default_version(self) -> str:
        return self.store.get_setting(DEFAULT_KEY)["version"]

    def set_default(self, version: str) -> None:
        self.store.put_setting(DEFAULT_KEY, {"version": version})

    def list(self) -> list[EvaluatorInfo]:
        default = self.default_version
        return [EvaluatorInfo(name=r["name"], version=r["version"], params=json.loads(r["params"]),
                              builtin=bool(r["builtin"]), default=r["version"] == default,
                              created_at=r["created_at"]) for r in self.store.list_evaluators()]

    # ---- adding versions -------------------------------------------------------------------------------
    def candidate(self, name: str, source: str | None, params: dict) -> EvaluatorSource:
        """Check a would-be version here without running it: syntax errors, a PARAMS that is not a literal
        dict and unknown parameters never reach a worker."""
        if source is None:
            source = self.latest(name)["source"]
        try:
            return EvaluatorSource(name, source, params)
        except EvaluatorError as exc:
            raise InvalidData(f"evaluator rejected: {exc}") from None

    def accept(self, evaluator: EvaluatorSource, make_default: bool) -> EvaluatorInfo:
        self._save(evaluator)
        if make_default:
            self.set_default(evaluator.version)
        return next(info for info in self.list() if info.version == evaluator.version)


def trial_failure(report: dict) -> InvalidData:
    return InvalidData(f"evaluator rejected after a trial run in a worker: {report['error']}")
