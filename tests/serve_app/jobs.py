"""Helpers for service tests: the in-process answer a job must match, a live follower of its events, and a
snapshot of what the store holds."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from functools import cache

from client.models import JobResult
from engine.candles import load_candles
from engine.miner import MiningResult, mine
from engine.settings import MinerSettings
from engine.synthetic import synthetic_candles

TERMINAL = ("finished", "failed", "cancelled")


@cache
def in_process(dataset: str, path: str | None = None, **settings) -> MiningResult:
    """The result of the same job run by the engine alone (no Ray), cached per spec."""
    candles = synthetic_candles() if dataset == "synthetic" else load_candles(path)
    return mine(candles, MinerSettings(**settings))


def assert_same_result(result: JobResult, local: MiningResult) -> None:
    """Same best genome, fitness, history, metrics, folds, baselines and verdict, to the last bit."""
    assert result.genome == local.best_genome.model_dump(mode="json")
    assert result.fitness == local.fitness and result.history == local.history
    assert result.validation == local.validation and result.baselines == local.baselines
    assert result.folds == local.folds and result.profitable_folds == local.profitable_folds
    assert result.train.metrics == local.train_metrics
    assert (result.holdout.metrics if result.holdout else None) == local.holdout_metrics
    assert result.evaluator_version == local.evaluator_version
    assert result.data_fingerprint == local.data_fingerprint


def wait_for_generation(client, job_id: str, generation: int) -> int:
    """Follow the job until it reports ``generation`` done; returns that event's seq."""
    for event in client.events(job_id):
        if event.type == "generation_best" and event.data.generation >= generation:
            return event.seq
    raise AssertionError("job ended before the wanted generation")


class Follower(threading.Thread):
    """Follows one job's events in a background thread, as a client on another laptop would."""

    def __init__(self, service, job_id: str):
        super().__init__(daemon=True)
        self.service, self.job_id = service, job_id
        self.events: list = []
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            with self.service.client(reconnect_for_s=180) as client:
                self.events.extend(client.events(self.job_id))
        except BaseException as exc:  # reported by result()
            self.error = exc

    def result(self, timeout_s: float = 180) -> list:
        self.join(timeout_s)
        assert not self.is_alive(), f"follower of {self.job_id} still waiting after {timeout_s} s"
        assert self.error is None, f"follower of {self.job_id} failed: {self.error!r}"
        return self.events


def assert_told_once_in_order(events: list) -> None:
    """Seq 1..n without gaps; each generation started and reported once; progress only grows."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "job_started" and events[-1].type in TERMINAL
    assert [e.type for e in events].count("job_started") == 1
    started = [e.data.generation for e in events if e.type == "generation_started"]
    best = [e.data.generation for e in events if e.type == "generation_best"]
    assert started == sorted(set(started)) and best == sorted(set(best))
    evaluated: dict[int, int] = {}
    for e in events:
        if e.type == "batch_evaluated":
            assert e.data.evaluated > evaluated.get(e.data.generation, 0), e
            evaluated[e.data.generation] = e.data.evaluated


def store_snapshot(service) -> dict:
    """What a bad request must not change: jobs, results, evaluators, settings, uploaded files."""
    db = sqlite3.connect(f"file:{service.state_dir / 'miner.db'}?mode=ro", uri=True)
    try:
        snapshot = {table: db.execute(f"SELECT {key} FROM {table} ORDER BY {key}").fetchall()
                    for table, key in (("jobs", "id"), ("results", "job_id"), ("evaluators", "version"),
                                       ("settings", "key, value"))}
    finally:
        db.close()
    uploads = service.state_dir / "uploads"
    snapshot["uploads"] = sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest())
                                 for p in uploads.glob("*")) if uploads.exists() else []
    return snapshot
