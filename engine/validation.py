"""The verdict on a mined result: a Monte Carlo permutation test of the whole search, and the deflated Sharpe.

**Permutation test** (T. Masters, "Permutation and Randomization Tests for Trading System Development", 2020):
the same search (same settings, seed, folds, evaluator) runs on ``permutations`` copies of the training data
whose bars are shuffled (``engine.shuffle``). A copy keeps the returns but has no link between what indicators
see and what follows, so its best fitness is what the search finds in noise. With ``k`` copies at least as good
as the real search, p = (1 + k) / (1 + permutations). Because each copy repeats the whole search, the test
accounts for how hard the search looked, which a test of the one reported strategy cannot.

**Deflated Sharpe ratio** (D. Bailey and M. Lopez de Prado, "The Deflated Sharpe Ratio", Journal of Portfolio
Management, 2014): the probability that the best strategy's per-trade Sharpe ratio beats the best of N lucky
trials, with N the distinct strategies the search evaluated, their Sharpe ratios' spread, and the skewness and
kurtosis of the strategy's own trade returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal, NamedTuple

import numpy as np

from engine.backtester import Window
from engine.baselines import RandomSearch
from engine.candles import Candles
from engine.ga import GeneticSearch
from engine.scoring import pooled_trade_stats
from engine.settings import MinerSettings
from engine.shuffle import shuffled_copy
from schema.research import SIGNIFICANCE, Validation

SHUFFLE_STREAM = 0x5EED
SHARPE_LIMIT = 1.0
EULER_GAMMA = 0.5772156649015329


class ValidationTask(NamedTuple):
    """One extra search of a job: the random baseline (index 0) or the search on shuffled copy ``index``."""

    kind: Literal["random", "shuffled"]
    index: int

    @property
    def key(self) -> str:
        return "random" if self.kind == "random" else f"copy-{self.index}"


def validation_tasks(settings: MinerSettings) -> list[ValidationTask]:
    """The random baseline, then one search per shuffled copy."""
    return [ValidationTask("random", 0)] + [ValidationTask("shuffled", k)
                                             for k in range(1, settings.permutations + 1)]


def task_candles(task: ValidationTask, candles: Candles, train: Window, seed: int) -> Candles:
    """The data a task searches: the real candles, or shuffled copy ``index`` of the training bars."""
    if task.kind == "random":
        return candles
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, SHUFFLE_STREAM, task.index])))
    return shuffled_copy(candles, train.end, rng, source=f"{candles.source} shuffled copy {task.index}")


def task_search(task: ValidationTask, settings: MinerSettings) -> GeneticSearch:
    return RandomSearch(settings) if task.kind == "random" else GeneticSearch(settings)


# ---- distinct strategies and the spread of their Sharpe ratios ------------------------------------------------
class TrialLog:
    """Every distinct strategy a search evaluated, and the variance of the per-trade Sharpe ratios of those that
    could have been reported (at least ``min_trades`` and two trades; winsorised at +-``SHARPE_LIMIT``): a handful
    of trades gives a Sharpe estimate so noisy that it would swamp the spread of the real candidates.

    Its state is three numbers (part of the checkpoint); the strategies are rebuilt from the keys of the populations
    evaluated (``asked``, as the search resumes from), so a resumed job counts exactly as an uninterrupted one.
    """

    def __init__(self, min_trades: int, state: dict | None = None, asked: Sequence[np.ndarray] = ()):
        self.min_trades = min_trades
        self.keys = np.unique(np.concatenate(asked)) if len(asked) else np.empty(0, np.uint64)
        self.sharpe_count, self.sharpe_sum, self.sharpe_squares = (state or {}).get("sharpe", (0, 0.0, 0.0))

    @property
    def count(self) -> int:
        return int(self.keys.size)

    def add(self, keys: np.ndarray, fold_metrics: np.ndarray) -> None:
        """A generation evaluated: ``keys`` (``genome_keys`` of its rows) and its per-fold metrics."""
        unique, first = np.unique(keys, return_index=True)
        at = np.searchsorted(self.keys, unique)  # self.keys stays sorted: a merge, not a re-sort of every key
        fresh = np.ones(unique.size, bool)
        if self.keys.size:
            fresh = self.keys[np.minimum(at, self.keys.size - 1)] != unique
        rows = first[fresh]
        self.keys = np.insert(self.keys, at[fresh], unique[fresh])
        trades, mean, std = pooled_trade_stats(fold_metrics[rows])
        defined = (trades >= max(self.min_trades, 2)) & (std > 0)
        # winsorised at +-1: with min_trades trades a per-trade Sharpe beyond 1 is an artefact of near-identical
        # returns (every exit at the target), and a few of those would set the bar for every real strategy
        sharpe = np.clip(mean[defined] / std[defined], -SHARPE_LIMIT, SHARPE_LIMIT)
        self.sharpe_count += int(sharpe.size)
        self.sharpe_sum += float(sharpe.sum())
        self.sharpe_squares += float((sharpe**2).sum())

    @property
    def sharpe_variance(self) -> float:
        n = self.sharpe_count
        if n < 2:
            return 0.0
        return max((self.sharpe_squares - self.sharpe_sum**2 / n) / (n - 1), 0.0)

    def state(self) -> dict:
        return {"sharpe": [self.sharpe_count, self.sharpe_sum, self.sharpe_squares]}


# ---- statistics -----------------------------------------------------------------------------------------------
def permutation_p_value(best: float, copies_best: list[float]) -> float:
    return (1 + sum(1 for c in copies_best if c >= best)) / (1 + len(copies_best))


def expected_max_sharpe(trials: int, sharpe_variance: float) -> float:
    """The Sharpe ratio the best of ``trials`` skill-less strategies is expected to show (Bailey & LdP eq. 2)."""
    if trials < 2 or sharpe_variance <= 0.0:
        return 0.0
    z = NormalDist().inv_cdf
    return math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * z(1 - 1 / trials)
                                         + EULER_GAMMA * z(1 - 1 / (trials * math.e)))


def deflated_sharpe(returns: np.ndarray, trials: int, sharpe_variance: float) -> tuple[float, float, float] | None:
    """(per-trade Sharpe, expected maximum Sharpe of the trials, deflated Sharpe ratio); None under 3 trades."""
    returns = np.asarray(returns, dtype=np.float64)
    if returns.size < 3 or returns.std() == 0.0:
        return None
    centred = returns - returns.mean()
    sigma = returns.std()
    sharpe = float(returns.mean() / returns.std(ddof=1))
    skew = float((centred**3).mean() / sigma**3)
    kurtosis = float((centred**4).mean() / sigma**4)
    benchmark = expected_max_sharpe(trials, sharpe_variance)
    spread = max(1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2, 1e-12)
    dsr = NormalDist().cdf((sharpe - benchmark) * math.sqrt(returns.size - 1) / math.sqrt(spread))
    return sharpe, benchmark, dsr


def verdict(*, permutations: int, best_fitness: float | None, copies_best: list[float] | None,
            strategies_tried: int, meets_min_trades: bool, min_trades: int, training_pnl: float,
            trade_returns: np.ndarray, sharpe_variance: float) -> Validation:
    """The verdict and its evidence. ``copies_best`` None: the test did not run to the end.

    ``edge`` needs the best strategy to end its training folds in profit after costs (``training_pnl``, their net
    PnL together), besides the test: the test shows that the search finds something in the real data that it does
    not find in shuffled copies, which a strategy can do while still losing less than the copies' best, not money
    a trader keeps."""
    dsr = deflated_sharpe(trade_returns, strategies_tried, sharpe_variance)
    sharpe, benchmark, deflated = dsr if dsr else (None, None, None)
    tried = f"{strategies_tried:,} strategies tried"
    profitable = training_pnl > 0.0
    common = dict(permutations=permutations, best_fitness=best_fitness, strategies_tried=strategies_tried,
                  meets_min_trades=meets_min_trades, profitable_in_training=profitable, sharpe_per_trade=sharpe,
                  deflated_sharpe=deflated, expected_max_sharpe=benchmark)
    if permutations == 0 or copies_best is None or best_fitness is None:
        why = "no permutation test was asked for (permutations 0)" if permutations == 0 else \
            "the job ended before the permutation test ran"
        return Validation(verdict="not_validated", p_value=None, copies_best_fitness=copies_best or [],
                          evidence=f"not validated: {why}; {tried}", **common)
    p = permutation_p_value(best_fitness, copies_best)
    beaten = sum(1 for c in copies_best if c < best_fitness)
    copies = "shuffled copy" if permutations == 1 else "shuffled copies"
    over = f"p = {p:.2f} over {permutations} {copies} (the real search beat {beaten} of them)"
    if not meets_min_trades:
        evidence = f"no evidence of an edge: the best strategy made fewer than {min_trades} training trades; " \
                   f"{over}; {tried}"
    elif p <= SIGNIFICANCE and not profitable:
        evidence = f"no tradable edge: the search found structure that shuffled copies lack ({over}), but the " \
                   f"best strategy loses after costs on its training folds (net {training_pnl:+,.2f}); {tried}"
    elif p <= SIGNIFICANCE:
        evidence = f"evidence of an edge: {over}; {tried}"
    else:
        evidence = f"no evidence of an edge: {over}; {tried}"
    edge = meets_min_trades and profitable and p <= SIGNIFICANCE
    return Validation(verdict="edge" if edge else "no_edge", p_value=p, copies_best_fitness=copies_best,
                      evidence=evidence, **common)
