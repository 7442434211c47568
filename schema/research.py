"""What a result says about its own credibility: per-fold evidence, baselines and the permutation verdict.

docs/research.md explains the method (a Monte Carlo permutation test of the whole search, after T. Masters)
and how to read each field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schema.numbers import StrictNumbers

Verdict = Literal["edge", "no_edge", "not_validated"]
SIGNIFICANCE = 0.05  # p at or below this is called an edge


class ValidationSettings(StrictNumbers):
    """The job settings that decide how hard a result is tested; shared by the engine's settings and the API."""

    folds: int = Field(4, ge=1, le=20, description="consecutive training slices every strategy must work on")
    min_trades: int = Field(30, ge=0, le=10_000,
                            description="closed training trades (all folds) below which a strategy ranks last")
    permutations: int = Field(19, ge=0, le=999,
                              description="shuffled copies of the training data the search is repeated on for "
                                          "the verdict; 0 = no verdict (19 is the fewest that can reach p = 0.05)")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FoldResult(_Record):
    """The best strategy on one training slice, backtested on that slice alone (positions closed at its end)."""

    start_time: int
    end_time: int
    bars: int
    score: float = Field(description="the evaluator's score on this slice")
    metrics: dict[str, float]


class Baselines(_Record):
    """What the reported strategy has to beat."""

    buy_and_hold_train_pct: float = Field(description="buy at the first open, sell at the last close, after costs")
    buy_and_hold_holdout_pct: float | None
    budget: int = Field(description="genome evaluations of the search: population x generations")
    random_best_fitness: float | None = Field(
        None, description="best fitness of `budget` random strategies on the same folds (None: not run)")
    random_best_strategy: str | None = None


class Validation(_Record):
    verdict: Verdict
    p_value: float | None = Field(description="(1 + copies at least as good as the real search) / "
                                              "(1 + permutations); None when not validated")
    permutations: int = Field(description="shuffled copies of the training data searched")
    copies_best_fitness: list[float] = Field(description="best fitness the same search found on each copy")
    best_fitness: float | None = Field(description="the real search's best fitness")
    strategies_tried: int = Field(description="distinct strategies the real search evaluated")
    meets_min_trades: bool = Field(description="the best strategy made at least min_trades training trades")
    profitable_in_training: bool | None = Field(None, description="the best strategy's training folds end in "
                                                                  "profit after costs, together; `edge` needs it "
                                                                  "(None: a result from before it was recorded)")
    sharpe_per_trade: float | None = Field(None, description="mean / std of the best strategy's trade returns")
    deflated_sharpe: float | None = Field(
        None, description="probability that the per-trade Sharpe beats the best of `strategies_tried` "
                          "lucky trials (Bailey & Lopez de Prado, 2014)")
    expected_max_sharpe: float | None = Field(
        None, description="per-trade Sharpe the luckiest of the trials would show with no skill")
    evidence: str = Field(description="the verdict in one sentence, with its numbers")


def _day(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%d %H:%M")


def research_lines(validation: Validation, folds: list[FoldResult], profitable_folds: int, baselines: Baselines,
                   fitness: float | None) -> list[str]:
    """The verdict in words first, then the deflated Sharpe, the folds and the baselines: what both CLIs print."""
    v = validation
    lines = [f"VERDICT: {v.evidence}"]
    if v.deflated_sharpe is not None:
        lines.append(f"deflated Sharpe {v.deflated_sharpe:.2f} (per-trade Sharpe {v.sharpe_per_trade:+.3f} vs "
                     f"{v.expected_max_sharpe:+.3f} expected from the luckiest of {v.strategies_tried:,} "
                     "skill-less trials; above 0.95 is significant)")
    if folds:
        trades = sum(fold.metrics["trades"] for fold in folds)
        lines.append(f"folds: {profitable_folds} of {len(folds)} profitable, {trades:,.0f} trades together (what "
                     "min_trades counts: a position still open at a fold's end is closed there)")
        lines.append(f"  {'fold':<5}{'from':<18}{'to':<18}{'bars':>7}{'trades':>8}{'return':>10}{'score':>9}")
        for k, fold in enumerate(folds, 1):
            m = fold.metrics
            lines.append(f"  {k:<5}{_day(fold.start_time):<18}{_day(fold.end_time):<18}{fold.bars:>7}"
                         f"{m['trades']:>8.0f}{m['return_pct']:>+9.2f}%{fold.score:>+9.3f}")
    holdout = "-" if baselines.buy_and_hold_holdout_pct is None else f"{baselines.buy_and_hold_holdout_pct:+.2f} %"
    lines.append(f"buy and hold: train {baselines.buy_and_hold_train_pct:+.2f} %, holdout {holdout}")
    if baselines.random_best_fitness is not None:
        search = "" if fitness is None else f" (the search: {fitness:+.3f}" + (
            "; random strategies did better)" if baselines.random_best_fitness > fitness else ")")
        lines.append(f"best of {baselines.budget:,} random strategies: fitness {baselines.random_best_fitness:+.3f}"
                     f"{search}")
    return lines
