"""The kernels against hand-computed cases and, property-based, against the reference backtest."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import layout as L
from engine.backtester import LocalBacktester, Window
from engine.candles import candles_from_arrays
from engine.features import FeatureStore
from engine.genome import Genome, IndicatorOperand, encode
from engine.kernel import backtest_detail_nb
from engine.kernel_batch import backtest_batch_nb
from engine.settings import Costs
from engine.synthetic import synthetic_candles

from .reference_backtest import reference_backtest

CROSS_UP = {"left": {"field": "close"}, "op": "crosses_above", "right": {"constant": 100.5}}


def bars(*ohlc):
    """Candles from (open, high, low, close) tuples, 5 minutes apart."""
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*ohlc, strict=True))
    return candles_from_arrays(1_700_000_000 + 300 * np.arange(len(o)), o, h, lo, c, np.ones(len(o)))


def run(candles, genome, fee_bps=0.0, slippage_bps=0.0):
    tester = LocalBacktester(candles, Costs(fee_bps=fee_bps, slippage_bps=slippage_bps, initial_cash=10_000))
    return tester.report(encode(genome), Window(0, len(candles)))


def genome(**overrides):
    spec = {"entry": [CROSS_UP], "stop_loss": 0.02, "take_profit": 0.04, **overrides}
    return Genome.model_validate(spec)


def test_signal_at_close_fills_next_open_and_stop_wins_when_both_levels_touched():
    candles = bars((100, 100, 100, 100), (100, 101, 100, 101), (101, 106, 98, 100), (100, 100, 100, 100))
    report = run(candles, genome())
    (trade,) = report.trades
    assert trade["entry_price"] == 101.0 and trade["exit_reason"] == "stop_loss"
    assert trade["exit_price"] == pytest.approx(101 * 0.98)
    units = 10_000 / 101
    assert trade["pnl"] == pytest.approx(units * (101 * 0.98 - 101))
    assert report.metrics["trades"] == 1 and report.metrics["win_rate"] == 0


def test_bar_opening_beyond_the_stop_fills_at_its_open():
    candles = bars((100, 100, 100, 100), (100, 101, 100, 101), (101, 102, 100, 101.5), (95, 96, 94, 95))
    (trade,) = run(candles, genome(take_profit=0.0)).trades
    assert (trade["exit_price"], trade["exit_reason"]) == (95.0, "stop_loss")


def test_take_profit_fills_at_the_level_and_after_an_exit_a_new_entry_can_be_decided_at_that_close():
    above = {"left": {"field": "close"}, "op": ">", "right": {"constant": 100.5}}
    candles = bars((100, 100, 100, 100), (100, 101, 100, 101), (101, 106, 100.8, 104),
                   (104, 104.5, 103.9, 104.2), (104.2, 104.5, 104, 104.3))
    report = run(candles, genome(entry=[above], take_profit=0.04))
    first, second = report.trades
    assert first["exit_reason"] == "take_profit" and first["exit_price"] == pytest.approx(101 * 1.04)
    assert first["exit_time"] == candles.timestamp[2]
    assert second["entry_time"] == candles.timestamp[3] and second["entry_price"] == 104
    assert (second["exit_reason"], second["exit_price"]) == ("end_of_data", 104.3)


def test_all_in_sizing_fees_and_slippage():
    candles = bars((100, 100, 100, 100), (100, 101, 100, 101), (102, 103, 101.5, 103), (103, 104, 102, 104))
    report = run(candles, genome(take_profit=0.0), fee_bps=60, slippage_bps=10)
    (trade,) = report.trades
    fill = 102 * 1.001
    units = 10_000 / (fill * 1.006)
    assert trade["units"] == pytest.approx(units) and trade["entry_price"] == pytest.approx(fill)
    exit_price = 104 * 0.999
    pnl = units * (exit_price - fill) - units * fill * 0.006 - units * exit_price * 0.006
    assert trade["pnl"] == pytest.approx(pnl)
    assert report.metrics["net_pnl"] == pytest.approx(pnl)
    # marked at close 2 without the hypothetical exit fee; last point is the realised cash
    assert report.equity[2] == pytest.approx(10_000 + units * (103 - fill) - units * fill * 0.006)
    assert report.equity[-1] == pytest.approx(10_000 + pnl)
    assert report.metrics["exposure"] == pytest.approx(2 / 4)


def test_short_mirrors_long():
    cross_down = {"left": {"field": "close"}, "op": "crosses_below", "right": {"constant": 99.5}}
    candles = bars((100, 100, 100, 100), (100, 100, 99, 99), (99, 99.5, 94, 95), (95, 95, 95, 95))
    (trade,) = run(candles, genome(entry=[cross_down], direction="short")).trades
    assert trade["exit_reason"] == "take_profit" and trade["exit_price"] == pytest.approx(99 * 0.96)
    assert trade["pnl"] == pytest.approx(10_000 / 99 * (99 - 99 * 0.96))


@pytest.mark.parametrize("stop_loss", [0.02, 0.0])
def test_trailing_stop_follows_the_best_price_of_earlier_bars(stop_loss):
    candles = bars((100, 100, 100, 100), (100, 101, 100, 101), (101, 110, 101, 109),
                   (109, 109, 104, 105), (105, 105, 105, 105))
    (trade,) = run(candles, genome(stop_loss=stop_loss, take_profit=0.0, trailing_stop=0.05)).trades
    assert trade["exit_reason"] == "trailing_stop" and trade["exit_price"] == pytest.approx(110 * 0.95)


@pytest.mark.parametrize(("direction", "entry", "crash"), [
    ("long", CROSS_UP, (101, 101, 60, 70)),
    ("short", {"left": {"field": "close"}, "op": "crosses_below", "right": {"constant": 99.5}}, (99, 150, 98, 140)),
])
def test_without_a_stop_loss_an_adverse_move_does_not_close_the_trade(direction, entry, crash):
    start = (100, 101, 100, 101) if direction == "long" else (100, 100, 99, 99)
    candles = bars((100, 100, 100, 100), start, crash, (crash[3], crash[3], crash[3], crash[3]))
    (trade,) = run(candles, genome(direction=direction, entry=[entry], stop_loss=0.0, take_profit=0.0)).trades
    assert (trade["exit_reason"], trade["exit_price"]) == ("end_of_data", crash[3])


def test_per_trade_return_statistics():
    above = {"left": {"field": "close"}, "op": ">", "right": {"constant": 100.5}}
    candles = bars((100, 100, 100, 100), (100, 101, 100, 101), (101, 106, 100.8, 104),
                   (104, 104.5, 103.9, 104.2), (104.2, 104.5, 104, 104.3))
    report = run(candles, genome(entry=[above], take_profit=0.04), fee_bps=60)
    first, second = (t["pnl"] for t in report.trades)
    returns = [first / 10_000, second / (10_000 + first)]  # each over the cash before its entry
    mean = statistics.fmean(returns)
    assert report.metrics["avg_trade_return"] == pytest.approx(mean, rel=1e-12)
    assert report.metrics["trade_t_stat"] == pytest.approx(mean / statistics.stdev(returns) * 2 ** 0.5, rel=1e-9)
    assert report.metrics["trade_z"] == pytest.approx(sum(returns) / sum(r * r for r in returns) ** 0.5, rel=1e-9)


def test_trades_with_equal_returns_have_no_t_statistic():
    """Two exits at the target level return the same fraction of cash; rounding noise is no deviation."""
    above = {"left": {"field": "close"}, "op": ">", "right": {"constant": 100.5}}
    candles = bars((100, 100, 100, 100), (100, 101, 100, 101), (101, 106, 100.8, 104),
                   (104, 109, 100, 100), (100, 100, 100, 100))
    report = run(candles, genome(entry=[above], stop_loss=0.0, take_profit=0.04), fee_bps=60, slippage_bps=5)
    assert [t["exit_reason"] for t in report.trades] == ["take_profit", "take_profit"]
    assert report.metrics["avg_trade_return"] > 0 and report.metrics["trade_t_stat"] == 0.0
    assert report.metrics["trade_z"] == pytest.approx(2 ** 0.5, rel=1e-12)  # the most two trades can show


def test_exit_rule_fills_at_next_open():
    exit_rule = {"left": {"field": "close"}, "op": "<", "right": {"constant": 101.5}}
    candles = bars((100, 100, 100, 100), (100, 101, 100, 101), (101, 102, 100.5, 101),
                   (101.2, 102, 100.5, 101), (101, 101, 101, 101))
    (trade,) = run(candles, genome(take_profit=0.0, exit=[exit_rule])).trades
    assert trade["exit_reason"] == "signal" and trade["exit_price"] == 101.2
    assert trade["exit_time"] == candles.timestamp[3]


def test_missing_feature_row_is_reported_as_nan_metrics():
    candles = synthetic_candles(200, seed=1)
    store = FeatureStore(candles)  # nothing prepared: sma(20) is absent
    row = encode(genome(entry=[{"left": {"field": "close"}, "op": ">",
                                "right": {"indicator": "sma", "period": 20}}]))
    out = backtest_batch_nb(row[None], store.matrix, store.lookup, 0, 200, 0.0, 0.0, 1e4, 1.0)
    assert np.isnan(out).all()


# ---- property-based: kernel == reference ------------------------------------------------------------

PERIODS = st.integers(2, 40)
PRICE_OPERANDS = st.sampled_from(["open", "high", "low", "close"]).map(lambda f: {"field": f})
PRICE_INDICATORS = st.builds(lambda name, p: {"indicator": name, "period": p}, st.sampled_from(["sma", "ema"]),
                             PERIODS)
OSCILLATORS = {"rsi": (0, 100), "bb_pctb": (-0.5, 1.5), "roc": (-1.0, 1.0), "macd_hist": (-50.0, 50.0)}
OPS = st.sampled_from(list(L.OPERATORS))


@st.composite
def rules(draw):
    family = draw(st.sampled_from(["price", "oscillator", "volume", "atr"]))
    op = draw(OPS)
    if family == "price":
        left = draw(st.one_of(PRICE_OPERANDS, PRICE_INDICATORS))
        right = draw(st.one_of(PRICE_OPERANDS, PRICE_INDICATORS))
    elif family == "oscillator":
        name = draw(st.sampled_from(sorted(OSCILLATORS)))
        low, high = OSCILLATORS[name]
        left = {"indicator": name, "period": draw(PERIODS)}
        right = {"constant": draw(st.floats(low, high))}
    elif family == "volume":
        left, right = {"field": "volume"}, {"indicator": "volume_sma", "period": draw(PERIODS)}
    else:
        left, right = ({"indicator": "atr", "period": draw(PERIODS)},
                       {"indicator": "atr", "period": draw(PERIODS)})
    return {"left": left, "op": op, "right": right}


STOP_LOSSES = st.floats(0.001, 0.1)
NO_STOP = st.one_of(st.just(0.0), st.none())  # null in a genome's JSON reads as 0: no stop


@st.composite
def genomes(draw, stop_losses=STOP_LOSSES):
    return Genome.model_validate({
        "direction": draw(st.sampled_from(["long", "short"])),
        "entry": draw(st.lists(rules(), min_size=1, max_size=4)),
        "exit": draw(st.lists(rules(), max_size=2)),
        "stop_loss": draw(stop_losses),
        "take_profit": draw(st.one_of(st.just(0.0), st.floats(0.001, 0.2))),
        "trailing_stop": draw(st.one_of(st.just(0.0), st.floats(0.001, 0.1))),
        "size": draw(st.one_of(st.just(1.0), st.floats(0.05, 1.0))),
        "leverage": draw(st.one_of(st.just(1.0), st.floats(1.0, 5.0))),
    })


@pytest.fixture(scope="module")
def datasets(btc_candles):
    return {"btc": btc_candles, "synthetic": synthetic_candles(6_000, seed=5)}


def columns_for(store: FeatureStore, genome_: Genome) -> dict:
    matrix, lookup = store.prepare(encode(genome_)[None, :])
    cols = {name: matrix[lookup[code, 0]] for name, code in L.PRICE_FIELDS.items()}
    for rule in [*genome_.entry, *genome_.exit]:
        for operand in (rule.left, rule.right):
            if isinstance(operand, IndicatorOperand):
                cols[(operand.indicator, operand.period)] = matrix[lookup[L.INDICATORS[operand.indicator],
                                                                         operand.period]]
    return cols


# where and how a property-based case runs: dataset, slice, warm-up bars before the window, costs
CASES = {"which": st.sampled_from(["btc", "synthetic"]), "offset": st.floats(0, 1), "length": st.integers(60, 2_500),
         "warm": st.integers(0, 300), "fee_bps": st.sampled_from([0.0, 10.0, 60.0]),
         "slippage_bps": st.sampled_from([0.0, 5.0])}
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(genome_=genomes(), **CASES)
def test_kernel_matches_reference(datasets, genome_, which, offset, length, warm, fee_bps, slippage_bps):
    assert_kernel_matches_reference(datasets[which], genome_, offset, length, warm, fee_bps, slippage_bps)


@PROPERTY
@given(genome_=genomes(stop_losses=NO_STOP), **CASES)
def test_kernel_matches_reference_without_a_stop_loss(datasets, genome_, which, offset, length, warm, fee_bps,
                                                     slippage_bps):
    """No stop, alone or with a trailing stop and/or a target (``genomes`` draws both on and off)."""
    assert genome_.stop_loss == 0.0
    assert_kernel_matches_reference(datasets[which], genome_, offset, length, warm, fee_bps, slippage_bps)


def assert_kernel_matches_reference(full, genome_, offset, length, warm, fee_bps, slippage_bps):
    """Same trade count, every metric to 1e-9, same trades and equity; batch and detail kernels agree."""
    first = int(offset * (len(full) - length - warm))
    candles = full.slice(first, first + warm + length)
    store = FeatureStore(candles)
    cols = columns_for(store, genome_)
    start, end = warm, warm + length
    fee, slip = fee_bps / 1e4, slippage_bps / 1e4
    expected, trades, equity = reference_backtest(genome_, cols, start, end, fee, slip, 10_000.0,
                                                  candles.periods_per_year)
    row = encode(genome_)
    batch = np.stack([row, row])  # a batch of two exercises work-array reuse across genomes
    got = backtest_batch_nb(batch, store.matrix, store.lookup, start, end, fee, slip, 10_000.0,
                            candles.periods_per_year)
    assert got[0, L.M_TRADES] == expected["trades"]
    np.testing.assert_array_equal(got[0], got[1])
    for name, column in zip(L.METRICS, got[0], strict=True):
        assert column == pytest.approx(expected[name], rel=1e-9, abs=1e-9), name
    metrics, got_trades, got_equity = backtest_detail_nb(row, store.matrix, store.lookup, start, end, fee, slip,
                                                         10_000.0, candles.periods_per_year)
    np.testing.assert_array_equal(metrics, got[0])
    assert [(int(t[0]), int(t[1]), L.EXIT_REASONS[int(t[6])]) for t in got_trades] == [
        (t["entry_bar"], t["exit_bar"], t["reason"]) for t in trades]
    np.testing.assert_allclose(got_equity, equity, rtol=1e-9)


def test_a_genome_whose_indicator_was_never_prepared_is_an_error_naming_it_not_a_score(monkeypatch):
    candles = synthetic_candles(500, seed=1)
    tester = LocalBacktester(candles, Costs())
    genome = encode(Genome(entry=[{"left": {"field": "close"}, "op": ">",
                                   "right": {"indicator": "sma", "period": 20}}], stop_loss=0.02))
    prices_only = encode(Genome(entry=[{"left": {"field": "close"}, "op": ">", "right": {"field": "open"}}],
                                stop_loss=0.02))
    plain = tester.features.prepare(prices_only[None, :])  # price rows only: sma(20) is missing
    monkeypatch.setattr(tester.features, "prepare", lambda genomes: plain)  # the bug this guards against
    with pytest.raises(ValueError, match="genome row 0 of this batch refers to an indicator"):
        tester.evaluate(genome[None, :], Window(0, 500))
