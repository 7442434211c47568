"""The verdict on data where the right answer is known, and the statistics behind it."""

import numpy as np
import pytest

from engine import layout as L
from engine.backtester import LocalBacktester, split_windows
from engine.genome import encode, genome_keys
from engine.miner import MiningSession, mine
from engine.planted import PLANTED_RULE, planted_edge_candles, random_walk_candles
from engine.settings import Costs, MinerSettings
from engine.validation import (
    deflated_sharpe,
    distinct_strategies,
    expected_max_sharpe,
    permutation_p_value,
    task_candles,
    validation_tasks,
    verdict,
)
from schema.research import Baselines, research_lines

# a small, fast search over a narrow period menu on 20,000 bars; the fast planted case has a strong edge (the
# moderate one, and the search at default settings, are bench/research.py's)
FAST = {"population": 40, "generations": 8, "period_menu": (7, 10, 14, 20), "risk": "MEDIUM"}


def test_the_p_value_counts_copies_at_least_as_good():
    assert permutation_p_value(5.0, [1.0] * 19) == 0.05
    assert permutation_p_value(5.0, [1.0] * 18 + [5.0]) == 0.10
    assert permutation_p_value(0.0, [1.0] * 19) == 1.0


def test_expected_max_sharpe_matches_the_best_of_simulated_lucky_trials():
    rng = np.random.default_rng(0)
    for trials, variance in ((100, 1.0), (1_000, 0.04)):
        maxima = rng.normal(0.0, np.sqrt(variance), size=(2_000, trials)).max(axis=1)
        assert expected_max_sharpe(trials, variance) == pytest.approx(maxima.mean(), rel=0.03)
    assert expected_max_sharpe(1, 1.0) == 0.0


def test_deflated_sharpe_separates_skill_from_the_luck_of_many_trials():
    rng = np.random.default_rng(1)
    lucky = rng.normal(0.002, 0.02, 200)  # per-trade Sharpe 0.1 over 200 trades: t about 1.4
    skilled = rng.normal(0.01, 0.02, 200)  # per-trade Sharpe 0.5: t about 7
    assert deflated_sharpe(lucky, 5_000)[2] < 0.5
    assert deflated_sharpe(skilled, 5_000)[2] > 0.99
    assert deflated_sharpe(lucky[:2], 5_000) is None
    # the bar is the largest t-statistic of 5,000 lucky strategies (about 3.6), in the strategy's own Sharpe units
    _, benchmark, _ = deflated_sharpe(skilled, 5_000)
    assert benchmark * np.sqrt(199) == pytest.approx(3.6, abs=0.1)


def test_the_planted_rule_passes_the_deflated_sharpe_and_noise_does_not():
    """The null's variance, not the trials' spread: after costs that spread is their (negative) true Sharpe ratios,
    and it set a bar no real edge passed. Trades of the planted rule against as many of a coin flip."""
    rng = np.random.default_rng(2)
    planted = rng.normal(0.0069, 0.019, 138)  # t = 4.25 over 138 trades, as the planted rule on its training bars
    assert deflated_sharpe(planted, 8_000)[2] > 0.5
    noise = [deflated_sharpe(rng.normal(0.0, 0.02, 138), 8_000)[2] for _ in range(200)]
    assert np.median(noise) < 0.01 and max(noise) < 0.5  # a strategy of noise is nowhere near the best of 8,000


def test_distinct_strategies_are_counted_once():
    rows = np.zeros((4, L.GENOME_WIDTH))
    rows[1, 0] = 1.0
    rows[3, 0] = -0.0  # the same gene as 0.0
    assert distinct_strategies([]) == 0
    assert distinct_strategies([genome_keys(rows)]) == 2 and len(set(genome_keys(rows).tolist())) == 2
    assert distinct_strategies([genome_keys(rows), genome_keys(rows[:2])]) == 2


def test_the_count_of_distinct_strategies_holds_over_many_overlapping_generations():
    rng = np.random.default_rng(2)
    asked, everyone = [], set()
    for _ in range(30):
        rows = np.zeros((50, L.GENOME_WIDTH))
        rows[:, L.SIZE] = rng.integers(0, 400, size=50)  # 400 strategies in all: generations overlap more and more
        asked.append(genome_keys(rows))
        everyone |= set(genome_keys(rows).tolist())
        assert distinct_strategies(asked) == len(everyone)


def test_verdict_rules():
    common = dict(strategies_tried=100, min_trades=30, trade_returns=np.zeros(0), training_pnl=120.0)
    assert verdict(permutations=19, best_fitness=3.0, copies_best=[1.0] * 19, meets_min_trades=True,
                   **common).verdict == "edge"
    assert verdict(permutations=19, best_fitness=3.0, copies_best=[1.0] * 18 + [3.5], meets_min_trades=True,
                   **common).verdict == "no_edge"
    short = verdict(permutations=19, best_fitness=3.0, copies_best=[1.0] * 19, meets_min_trades=False, **common)
    assert short.verdict == "no_edge" and "fewer than 30 training trades" in short.evidence
    off = verdict(permutations=0, best_fitness=3.0, copies_best=[], meets_min_trades=True, **common)
    assert off.verdict == "not_validated" and off.p_value is None and "permutations 0" in off.evidence
    cut = verdict(permutations=19, best_fitness=3.0, copies_best=None, meets_min_trades=True, **common)
    assert cut.verdict == "not_validated" and "ended before" in cut.evidence
    # beating every copy is not enough: a strategy that loses after costs is no edge to trade
    losing = verdict(permutations=19, best_fitness=-0.26, copies_best=[-1.0] * 19, meets_min_trades=True,
                     **{**common, "training_pnl": -2_440.0})
    assert losing.verdict == "no_edge" and losing.p_value == 0.05 and not losing.profitable_in_training
    assert "no tradable edge" in losing.evidence and "loses after costs on its training folds (net -2,440.00)" \
        in losing.evidence


def test_shuffling_destroys_the_planted_edge():
    """The hand-written rule's per-trade t falls from about 4 to the random-walk level on every shuffled copy."""
    candles = planted_edge_candles(seed=1)
    settings = MinerSettings(seed=1, permutations=5)
    train = split_windows(len(candles), settings.holdout_fraction)[0]

    def rule_t(c):
        return LocalBacktester(c, Costs()).report(encode(PLANTED_RULE), train).metrics["trade_t_stat"]

    copies = [rule_t(task_candles(t, candles, train, settings.seed)) for t in validation_tasks(settings)[1:]]
    walk = rule_t(random_walk_candles(seed=1))
    assert rule_t(candles) > 3.0
    assert all(t < 0.0 for t in copies)  # after costs, nothing left to earn
    assert abs(np.mean(copies) - walk) < 3.0


def test_a_planted_edge_gets_the_edge_verdict():
    result = mine(planted_edge_candles(20_000, seed=2, strength=0.0015), MinerSettings(seed=1, **FAST))
    v = result.validation
    assert v.verdict == "edge" and v.p_value == 0.05 and v.permutations == 19
    assert v.best_fitness > max(v.copies_best_fitness) and v.meets_min_trades
    assert result.fitness > result.baselines.random_best_fitness
    assert result.holdout_metrics["return_pct"] > 0 and result.best_genome.direction == "long"


def test_a_random_walk_gets_no_edge():
    result = mine(random_walk_candles(20_000, seed=2), MinerSettings(seed=3, **FAST))
    assert result.validation.verdict == "no_edge" and result.validation.p_value > 0.05
    assert result.validation.evidence.startswith("no evidence of an edge")


def test_a_cancelled_job_is_not_validated():
    stops = iter([False] * 3 + [True] * 1_000)
    result = mine(random_walk_candles(5_000, seed=1), MinerSettings(population=8, generations=2, batch_size=4),
                  should_stop=lambda: next(stops))
    assert result.cancelled and result.validation.verdict == "not_validated"


def test_a_job_resumed_mid_validation_gives_the_same_verdict():
    candles = random_walk_candles(8_000, seed=4)
    settings = MinerSettings(population=10, generations=2, seed=4, permutations=3)
    straight = mine(candles, settings)
    states = []
    mine(candles, settings, on_checkpoint=states.append, should_stop=lambda: len(states) >= 4)
    mid = states[-1]
    assert 0 < len(mid["validated"]) < len(validation_tasks(settings))  # stopped between validation searches
    resumed = mine(candles, settings, resume_state=mid)
    assert resumed.model_dump() == straight.model_dump()
    assert MiningSession(len(candles), candles.fingerprint, settings, resume_state=mid).pending_tasks()


def test_the_research_lines_say_when_random_strategies_did_better_than_the_search():
    common = dict(strategies_tried=100, min_trades=30, trade_returns=np.zeros(0), training_pnl=1.0)
    validation = verdict(permutations=0, best_fitness=0.5, copies_best=None, meets_min_trades=True, **common)
    cases = ((0.7, "(the search: +0.500; random strategies did better)"), (0.2, "(the search: +0.500)"))
    for random_best, words in cases:
        baselines = Baselines(buy_and_hold_train_pct=1.0, buy_and_hold_holdout_pct=None, budget=100,
                              random_best_fitness=random_best)
        assert research_lines(validation, [], 0, baselines, 0.5)[-1].endswith(words)
