"""The hall of fame: the best distinct strategies of a job's search, ranked on training fitness alone.

A job keeps more than its single best, so that however it ends (finished, cancelled, failed) its best strategies
are there to compare and take elsewhere. Only generations of the real search are added (never the validation
searches on shuffled copies); the holdout is never looked at. "Distinct" is ``engine.genome.genome_keys``, the
search's own identity of a strategy. A tie in fitness keeps the entry found first (earlier generation, then earlier
row), as the search's own best does: the first entry is the search's best, and the order depends only on the
search, never on where its batches ran. The state is JSON (part of the checkpoint), so a resumed job ends with
the same entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from engine.genome import Genome, genome_keys


@dataclass(frozen=True)
class Famed:
    """One strategy of the hall: its encoded row, training fitness, the generation that found it and its
    per-fold training metrics (folds, metrics), as the search was told them."""

    row: np.ndarray
    fitness: float
    generation: int
    fold_metrics: np.ndarray

    @property
    def key(self) -> int:
        return int(genome_keys(self.row)[0])

    def state(self) -> dict:
        return {"row": self.row.copy(), "fitness": self.fitness, "generation": self.generation,
                "fold_metrics": self.fold_metrics.copy()}

    @classmethod
    def restore(cls, state: dict) -> Famed:
        return cls(np.array(state["row"], dtype=np.float64), float(state["fitness"]), int(state["generation"]),
                   np.array(state["fold_metrics"], dtype=np.float64))


class HallOfFameEntry(BaseModel):
    """A strategy of a result's hall of fame, backtested on the whole training window and on the holdout."""

    fitness: float
    generation: int
    genome: Genome
    strategy: str
    train_metrics: dict[str, float]
    holdout_metrics: dict[str, float] | None


class HallOfFame:
    """The top ``size`` distinct strategies told so far, best first; strategies without a finite fitness (not
    scorable) are never entered."""

    def __init__(self, size: int, state: list[dict] | None = None):
        self.size = size
        self.entries = [Famed.restore(entry) for entry in state or []]

    @property
    def best(self) -> Famed | None:
        return self.entries[0] if self.entries else None

    @property
    def floor(self) -> float:
        """The fitness a strategy must pass to enter the hall from now on: its last entry's when full (a tie keeps
        the entry found first), else -inf. It never falls."""
        return self.entries[-1].fitness if len(self.entries) >= self.size else -np.inf

    def add(self, population: np.ndarray, fitness: np.ndarray, fold_metrics: np.ndarray, generation: int) -> None:
        """Enter a told generation: row i of ``population`` has ``fitness[i]`` and ``fold_metrics[i]``."""
        order = np.argsort(-fitness, kind="stable")
        order = order[np.isfinite(fitness[order])]
        keys = genome_keys(population[order]) if order.size else np.empty(0, dtype=np.uint64)
        merged: list[Famed] = []
        seen: set[int] = set()
        old, new = iter(self.entries), iter(zip(order.tolist(), keys.tolist(), strict=True))
        kept, candidate = next(old, None), next(new, None)
        while len(merged) < self.size and (kept is not None or candidate is not None):
            if candidate is None or (kept is not None and kept.fitness >= fitness[candidate[0]]):
                entry, key, kept = kept, kept.key, next(old, None)
            else:
                i, key = candidate
                entry = Famed(population[i].copy(), float(fitness[i]), generation, fold_metrics[i].copy())
                candidate = next(new, None)
            if key not in seen:
                seen.add(key)
                merged.append(entry)
        self.entries = merged

    def state(self) -> list[dict]:
        return [entry.state() for entry in self.entries]
