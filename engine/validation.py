"""The verdict on a mined result: a Monte Carlo permutation test of the whole search, and the deflated Sharpe.

**Permutation test** (T. Masters, "Permutation and Randomization Tests for Trading System Development", 2020):
the same search (same settings, seed, folds, evaluator) runs on ``permutations`` copies of the training data
whose bars are shuffled (``engine.shuffle``). A copy keeps the returns but has no link between what indicators
see and what follows, so its best fitness is what the search finds in noise. With ``k`` copies at least as good
as the real search, p = (1 + k) / (1 + permutations). Because each copy repeats the whole search, the test
accounts for how hard the search looked, which a test of the one reported strategy cannot.

**Deflated Sharpe ratio** (D. Bailey and M. Lopez de Prado, "The Deflated Sharpe Ratio", Journal of Portfolio
Management, 2014): the probability that the best strategy's per-trade Sharpe ratio beats the best of N lucky
trials, with N the distinct strategies the search evaluated, and the skewness and kurtosis of the strategy's own
trade returns. The variance of the lucky trials' Sharpe ratios is the null's: that of a Sharpe estimate from as many
trades as the strategy made, 1 / (T - 1), so the test is the strategy's t-statistic against the largest of N
standard normal draws. Not the spread of the trials' estimates, as until 2026-12-04: after costs that spread is
mostly the trials' true and negative Sharpe ratios (strategies that trade more lose more), not luck, and it set a
bar no real edge could pass (the planted rule, t = 4.25 over 138 trades, scored 0.0000); and per-trade Sharpe ratios
of trials with 30 and with 3,000 trades are not comparable, while their t-statistics are.
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
from engine.settings import MinerSettings
from engine.shuffle import shuffled_copy
from schema.research import SIGNIFICANCE, Validation

SHUFFLE_STREAM = 0x5EED
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


# ---- distinct strategies ---------------------------------------------------------------------------------------
def distinct_strategies(asked: Sequence[np.ndarray]) -> int:
    """How many distinct strategies a search evaluated, from the keys of its populations (``genome_keys``, one array
    per generation, as the search resumes from, so a resumed job counts exactly as an uninterrupted one): the
    deflated Sharpe's number of trials. Counted once, for the result: keeping a running set sorted cost the
    coordinator a copy of every key at each generation."""
    return int(np.unique(np.concatenate(asked)).size) if len(asked) else 0


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


def deflated_sharpe(returns: np.ndarray, trials: int) -> tuple[float, float, float] | None:
    """(per-trade Sharpe, expected maximum Sharpe of ``trials`` lucky strategies with as many trades, deflated Sharpe
    ratio); None under 3 trades."""
    returns = np.asarray(returns, dtype=np.float64)
    if returns.size < 3 or returns.std() == 0.0:
        return None
    centred = returns - returns.mean()
    sigma = returns.std()
    sharpe = float(returns.mean() / returns.std(ddof=1))
    skew = float((centred**3).mean() / sigma**3)
    kurtosis = float((centred**4).mean() / sigma**4)
    benchmark = expected_max_sharpe(trials, 1.0 / (returns.size - 1))  # the null's variance of this estimate
    spread = max(1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2, 1e-12)
    dsr = NormalDist().cdf((sharpe - benchmark) * math.sqrt(returns.size - 1) / math.sqrt(spread))
    return sharpe, benchmark, dsr


def verdict(*, permutations: int, best_fitness: float | None, copies_best: list[float] | None,
            strategies_tried: int, meets_min_trades: bool, min_trades: int, training_pnl: float,
            trade_returns: np.ndarray) -> Validation:
    """The verdict and its evidence. ``copies_best`` None: the test did not run to the end.

    ``edge`` needs the best strategy to end its training folds in profit after costs (``training_pnl``, their net
    PnL together), besides the test: the test shows that the search finds something in the real data that it does
    not find in shuffled copies, which a strategy can do while still losing less than the copies' best, not money
    a trader keeps."""
    dsr = deflated_sharpe(trade_returns, strategies_tried)
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
