import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine import layout as L
from engine.backtester import LocalBacktester, Window, split_windows, trade_returns
from engine.evaluator import Evaluator
from engine.scoring import (
    FOLD_SPREAD_PENALTY,
    aggregate_folds,
    combine_folds,
    fold_windows,
    job_fitness,
    pooled_trade_stats,
)
from engine.settings import RISK_PRESETS, Costs, MinerSettings, RiskLevel
from engine.space import GenomeSpace
from engine.synthetic import synthetic_candles

IGNORES_TRADES = Evaluator("ignores_trades", "def score(m):\n    return m.net_pnl * 1e12 + m.sharpe\n")


def test_folds_cut_training_into_consecutive_near_equal_slices():
    folds = fold_windows(Window(0, 1003), 4)
    assert [(w.start, w.end) for w in folds] == [(0, 251), (251, 502), (502, 752), (752, 1003)]
    assert fold_windows(Window(0, 500), 1) == [Window(0, 500)]


def test_too_many_folds_for_the_data_is_a_clear_error():
    with pytest.raises(ValueError, match="1000 training bars are too few for 11 folds"):
        fold_windows(Window(0, 1000), 11)


def test_fitness_is_the_fold_mean_minus_a_spread_penalty():
    scores = np.array([[1.0, 3.0], [2.0, 2.0], [5.0, -np.inf]])
    assert aggregate_folds(scores).tolist() == [2.0 - FOLD_SPREAD_PENALTY * 1.0, 2.0, -np.inf]


@settings(max_examples=200, deadline=None)
@given(metrics=arrays(np.float64, (12, 3, L.N_METRICS), elements=st.floats(-1e6, 1e6)),
       trades=arrays(np.int64, (12, 3), elements=st.integers(0, 40)), min_trades=st.integers(0, 100))
def test_min_trades_ranks_every_short_genome_below_every_qualified_one(metrics, trades, min_trades):
    """Whatever a pushed evaluator returns (here it ignores trades entirely), the engine's rule holds."""
    metrics[:, :, L.M_TRADES] = trades
    fitness = job_fitness(IGNORES_TRADES, metrics, min_trades)
    total = trades.sum(axis=1)
    qualified, short = fitness[total >= min_trades], fitness[total < min_trades]
    if qualified.size and short.size:
        assert qualified.min() > short.max()
    # among the short ones, more trades rank higher: the search is pulled towards trading enough
    order = np.argsort(total[total < min_trades])
    assert np.all(np.diff(short[order]) >= 0)
    assert np.isfinite(fitness).all()


@pytest.fixture(scope="module")
def fold_reports():
    candles = synthetic_candles(6_000, seed=4)
    tester = LocalBacktester(candles, Costs())
    space = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], MinerSettings().period_menu)
    genomes = space.random_population(30, np.random.default_rng(5))
    folds = fold_windows(split_windows(len(candles), 0.2)[0], 3)
    metrics = np.stack([tester.evaluate(genomes, w) for w in folds], axis=1)
    returns = []
    for genome in genomes:
        per_genome = []
        for w in folds:
            per_genome.append(trade_returns(tester.report(genome, w).trades, Costs().initial_cash))
        returns.append(np.concatenate(per_genome))
    return metrics, returns, np.array([w.bars for w in folds], dtype=float)


def test_pooled_trade_statistics_equal_those_of_all_trades_together(fold_reports):
    metrics, returns, _ = fold_reports
    trades, mean, std = pooled_trade_stats(metrics)
    assert sum(r.size >= 2 for r in returns) >= 10  # the sample has genomes that trade
    for k, r in enumerate(returns):
        assert trades[k] == r.size
        assert mean[k] == pytest.approx(r.mean() if r.size else 0.0, rel=1e-9, abs=1e-15)
        assert std[k] == pytest.approx(r.std(ddof=1) if r.size > 1 else 0.0, rel=1e-7, abs=1e-15)


def test_combined_fold_summary(fold_reports):
    metrics, returns, bars = fold_reports
    combined = combine_folds(metrics, bars)
    assert combined[:, L.M_TRADES].tolist() == [r.size for r in returns]
    assert np.allclose(combined[:, L.M_NET_PNL], metrics[:, :, L.M_NET_PNL].sum(axis=1))
    assert np.allclose(combined[:, L.M_MAX_DRAWDOWN], metrics[:, :, L.M_MAX_DRAWDOWN].max(axis=1))
    for k, r in enumerate(returns):
        if r.size:
            assert combined[k, L.M_TRADE_Z] == pytest.approx(r.sum() / np.sqrt((r**2).sum()), rel=1e-7)
        if r.size > 1 and r.std(ddof=1) > L.EQUAL_RETURNS_TOLERANCE * abs(r.mean()):
            assert combined[k, L.M_TRADE_T_STAT] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(r.size),
                                                                  rel=1e-7)
        else:  # equal up to rounding (every trade exits at its stop, say): no t-statistic, as the kernel's
            assert combined[k, L.M_TRADE_T_STAT] == 0.0


def test_bar_z_stays_a_standard_normal_on_a_random_walk_where_trade_z_rewards_tight_targets():
    """Why balanced scores bar_z: a wide stop and a tight target win nearly every trade on a random walk until
    the rare large loss, which inflates per-trade statistics; per-bar returns have mean 0 whatever the exits."""
    from engine.planted import random_walk_candles

    candles = random_walk_candles(20_000, seed=3)
    space = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], MinerSettings().period_menu)
    genomes = space.random_population(400, np.random.default_rng(5))
    tight_targets = genomes.copy()
    tight_targets[:, [L.STOP_LOSS, L.TRAILING_STOP]] = 0.0
    tight_targets[:, L.TAKE_PROFIT] = 0.004
    tester = LocalBacktester(candles, Costs(fee_bps=0, slippage_bps=0))
    window = Window(0, len(candles))

    metrics = tester.evaluate(genomes, window)
    bar_z = metrics[metrics[:, L.M_TRADES] >= 10, L.M_BAR_Z]
    assert bar_z.size > 200
    assert abs(bar_z.mean()) < 0.3 and 0.8 < bar_z.std() < 1.2

    metrics = tester.evaluate(tight_targets, window)
    traded = metrics[metrics[:, L.M_TRADES] >= 10]
    trade_z_beyond_3 = (traded[:, L.M_TRADE_Z] > 3).mean()
    bar_z_beyond_3 = (traded[:, L.M_BAR_Z] > 3).mean()
    assert trade_z_beyond_3 > 0.05 and trade_z_beyond_3 > 3 * bar_z_beyond_3
