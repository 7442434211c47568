"""A batch's fold metrics cut to what the search reads of them, so that a worker's answer is small.

Telling a generation reads three things from its (genomes, folds, metrics) array: every genome's trade statistics
(``TrialLog``, for the deflated Sharpe's count of trials: ``TRADE_STAT_COLUMNS``), and every metric of the genomes
that can enter the hall of fame or be the generation's best, which are among each batch's fittest: a genome that
``keep`` distinct genomes of its own batch outrank can never be one of a generation's ``keep`` best distinct ones,
whichever batches the others came from. So a batch answers with those columns for all of its genomes and whole rows
for its fittest only (``BriefMetrics``): about a quarter of the bytes on four folds, so the coordinator asks for
fewer, larger batches (each answer travels inline in Ray's reply, under 100 KB). ``fill`` rebuilds an array in
which every value the search reads is the batch's own, bit for bit; the others are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import layout as L
from engine.evaluator import search_ranked
from engine.genome import genome_keys

TRADE_STAT_COLUMNS = (L.M_TRADES, L.M_AVG_TRADE_RETURN, L.M_TRADE_T_STAT)  # what ``pooled_trade_stats`` reads


@dataclass(frozen=True)
class BriefMetrics:
    trade_stats: np.ndarray  # (n, folds, len(TRADE_STAT_COLUMNS)): every genome's
    rows: np.ndarray  # (k,) the batch rows whose every metric is kept, fittest first
    kept: np.ndarray  # (k, folds, metrics): their fold metrics

    @classmethod
    def of(cls, genomes: np.ndarray, fold_metrics: np.ndarray, fitness: np.ndarray, keep: int) -> BriefMetrics:
        """The brief of a batch: whole rows for its fittest genomes until ``keep`` distinct ones (by genome key) are
        in, ranked as the search ranks (non-finite fitness last, ties to the lower row)."""
        order = np.argsort(-search_ranked(fitness), kind="stable")
        _, first_seen = np.unique(genome_keys(genomes[order]), return_index=True)
        firsts = np.sort(first_seen)
        rows = order[:firsts[keep]] if firsts.size > keep else order
        return cls(np.ascontiguousarray(fold_metrics[:, :, TRADE_STAT_COLUMNS]), rows, fold_metrics[rows])

    def fill(self, out: np.ndarray) -> None:
        """Write the batch's (n, folds, metrics) as the search reads it into ``out``: the trade statistics of every
        row, every metric of the kept rows, NaN elsewhere."""
        out[...] = np.nan
        out[:, :, TRADE_STAT_COLUMNS] = self.trade_stats
        out[self.rows] = self.kept

    @staticmethod
    def bytes_per_genome(folds: int) -> int:
        """What each genome adds to a brief answer (its fitness included)."""
        return 8 * (folds * len(TRADE_STAT_COLUMNS) + 1)

    @staticmethod
    def bytes_kept(folds: int, keep: int) -> int:
        """What the kept rows add, at most."""
        return 8 * keep * (folds * L.N_METRICS + 1)
