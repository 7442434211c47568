"""A batch's fold metrics cut to what the search reads of them, so that a worker's answer is small.

Telling a generation reads every metric of the genomes that can enter the hall of fame or be the generation's best,
which are among each batch's fittest: a genome that ``keep`` distinct genomes of its own batch outrank can never be
one of a generation's ``keep`` best distinct ones, whichever batches the others came from. Of every other genome it
reads only the fitness, which comes beside. So a batch answers with whole rows for its fittest only
(``BriefMetrics``), and the coordinator asks for fewer, larger batches (each answer travels inline in Ray's reply,
under 100 KB). ``fill`` rebuilds an array in which every value the search reads is the batch's own, bit for bit;
the others are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import layout as L
from engine.evaluator import search_ranked
from engine.genome import genome_keys


def fittest_distinct(keys: np.ndarray, fitness: np.ndarray, keep: int) -> np.ndarray:
    """Row indices of a batch's fittest genomes, ranked as the search ranks (non-finite fitness last, ties to the
    lower row), until ``keep`` distinct ones (by genome key) are in; the twins ranked among them come too."""
    order = np.argsort(-search_ranked(fitness), kind="stable")
    _, first_seen = np.unique(keys[order], return_index=True)
    firsts = np.sort(first_seen)
    return order[:firsts[keep]] if firsts.size > keep else order


@dataclass(frozen=True)
class BriefMetrics:
    rows: np.ndarray  # (k,) the batch rows whose every metric is kept, fittest first
    kept: np.ndarray  # (k, folds, metrics): their fold metrics

    @classmethod
    def of(cls, genomes: np.ndarray, fold_metrics: np.ndarray, fitness: np.ndarray, keep: int) -> BriefMetrics:
        """The brief of a batch: whole rows for its fittest genomes until ``keep`` distinct ones (by genome key) are
        in (``fittest_distinct``)."""
        rows = fittest_distinct(genome_keys(genomes), fitness, keep)
        return cls(rows, fold_metrics[rows])

    def fill(self, out: np.ndarray) -> None:
        """Write the batch's (n, folds, metrics) as the search reads it into ``out``: every metric of the kept
        rows, NaN elsewhere."""
        out[...] = np.nan
        out[self.rows] = self.kept

    BYTES_PER_GENOME = 8  # what each genome adds to an answer: its fitness

    @staticmethod
    def bytes_kept(folds: int, keep: int) -> int:
        """What the kept rows add, at most."""
        return 8 * keep * (folds * L.N_METRICS + 1)
