"""A genome's fitness over the training folds: the evaluator per fold, one aggregation rule, one trade floor.

Every evaluator, built-in or pushed, scores one fold's metrics at a time; this module turns those per-fold
scores into the fitness the search ranks by, so the rules below hold whatever the evaluator does:

- **Folds.** Training is cut into ``folds`` consecutive slices, each backtested on its own (a position still
  open at a slice's end is closed there). Fitness = mean of the fold scores - ``FOLD_SPREAD_PENALTY`` x their
  standard deviation: a strategy must work in several market periods, not in one lucky stretch.
- **min_trades.** A genome with fewer closed training trades (all folds together) than ``min_trades`` ranks
  below every genome that meets it: its fitness is ``UNQUALIFIED`` minus its shortfall (so the search is still
  pulled towards trading more), while qualified fitness is floored at ``QUALIFIED_FLOOR`` above it.
"""

from __future__ import annotations

import itertools

import numpy as np

from engine import layout as L
from engine.backtester import Window
from engine.evaluator import Evaluator

FOLD_SPREAD_PENALTY = 0.5
QUALIFIED_FLOOR = -1e9
UNQUALIFIED = -2e9
MIN_FOLD_BARS = 100


def fold_windows(train: Window, folds: int) -> list[Window]:
    """``folds`` consecutive, nearly equal slices of ``train``; raises if a slice would be under 100 bars."""
    if train.bars // folds < MIN_FOLD_BARS:
        raise ValueError(f"{train.bars} training bars are too few for {folds} folds: each fold needs at least "
                         f"{MIN_FOLD_BARS} bars; use fewer folds")
    edges = np.linspace(train.start, train.end, folds + 1).round().astype(np.int64)
    return [Window(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def fold_scores(evaluator: Evaluator, fold_metrics: np.ndarray) -> np.ndarray:
    """(n_genomes, n_folds) evaluator scores, non-finite mapped to -inf; ``fold_metrics`` is (n, folds, metrics)."""
    return np.stack([evaluator.fitness(fold_metrics[:, f]) for f in range(fold_metrics.shape[1])], axis=1)


def aggregate_folds(scores: np.ndarray) -> np.ndarray:
    """Mean minus ``FOLD_SPREAD_PENALTY`` x standard deviation across folds; -inf if any fold is unscorable."""
    finite = np.isfinite(scores).all(axis=1)
    safe = np.where(np.isfinite(scores), scores, 0.0)
    return np.where(finite, safe.mean(axis=1) - FOLD_SPREAD_PENALTY * safe.std(axis=1), -np.inf)


def apply_min_trades(fitness: np.ndarray, trades: np.ndarray, min_trades: int) -> np.ndarray:
    """Genomes under ``min_trades`` rank below all others, ordered by how many trades they lack."""
    qualified = np.maximum(np.where(np.isfinite(fitness), fitness, QUALIFIED_FLOOR), QUALIFIED_FLOOR)
    return np.where(trades >= min_trades, qualified, UNQUALIFIED - (min_trades - trades))


def job_fitness(evaluator: Evaluator, fold_metrics: np.ndarray, min_trades: int) -> np.ndarray:
    """The fitness the search ranks by, one per genome (see the module docstring)."""
    trades = fold_metrics[:, :, L.M_TRADES].sum(axis=1)
    return apply_min_trades(aggregate_folds(fold_scores(evaluator, fold_metrics)), trades, min_trades)


def pooled_trade_stats(fold_metrics: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(trades, mean, sample std) of per-trade returns over all folds, from each fold's mean and t-statistic.

    A fold's std is recovered as mean * sqrt(n) / t (0 when t is 0: fewer than two trades or no spread).
    """
    n = fold_metrics[:, :, L.M_TRADES]
    mean = fold_metrics[:, :, L.M_AVG_TRADE_RETURN]
    t = fold_metrics[:, :, L.M_TRADE_T_STAT]
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.where(t != 0.0, np.abs(mean * np.sqrt(n) / t), 0.0)
        total = n.sum(axis=1)
        pooled_mean = np.where(total > 0, (n * mean).sum(axis=1) / total, 0.0)
        squares = (np.maximum(n - 1, 0) * std**2 + n * (mean - pooled_mean[:, None]) ** 2).sum(axis=1)
        pooled_std = np.where(total > 1, np.sqrt(squares / (total - 1)), 0.0)
    return total, pooled_mean, pooled_std


def combine_folds(fold_metrics: np.ndarray, fold_bars: np.ndarray) -> np.ndarray:
    """One metrics row per genome summarising its folds: (n, folds, metrics) -> (n, metrics).

    Sums for PnL, return (every fold starts from the same cash) and trades; trade-weighted win rate; the worst
    drawdown; bar-weighted exposure; per-trade statistics pooled over all trades; bar_z by Stouffer's rule
    (sum / sqrt(folds)); the mean of the other ratios.
    """
    m = fold_metrics
    out = m.mean(axis=1)
    trades, mean, std = pooled_trade_stats(m)
    for column in (L.M_NET_PNL, L.M_RETURN_PCT, L.M_TRADES):
        out[:, column] = m[:, :, column].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, L.M_WIN_RATE] = np.where(trades > 0, (m[:, :, L.M_WIN_RATE] * m[:, :, L.M_TRADES]).sum(axis=1)
                                        / trades, 0.0)
        # as the kernel does per fold: returns equal up to rounding (every fold's trades exit at the same fraction)
        # have no t-statistic, not one of 1e14 from dividing by the rounding
        spread = std > L.EQUAL_RETURNS_TOLERANCE * np.abs(mean)
        out[:, L.M_TRADE_T_STAT] = np.where(spread, mean / std * np.sqrt(trades), 0.0)
        squares = np.maximum(trades - 1, 0) * std**2 + trades * mean**2
        out[:, L.M_TRADE_Z] = np.where(squares > 0, trades * mean / np.sqrt(squares), 0.0)
    out[:, L.M_BAR_Z] = m[:, :, L.M_BAR_Z].sum(axis=1) / np.sqrt(m.shape[1])  # Stouffer's combination
    out[:, L.M_MAX_DRAWDOWN] = m[:, :, L.M_MAX_DRAWDOWN].max(axis=1)
    out[:, L.M_EXPOSURE] = (m[:, :, L.M_EXPOSURE] * fold_bars).sum(axis=1) / fold_bars.sum()
    out[:, L.M_AVG_TRADE_RETURN] = mean
    return out
