"""The shared-bitset batch kernel equals the per-genome kernel bit for bit, alone or in any batch, on any windows.

The per-genome kernel (``engine.kernel.backtest_detail_nb``, the simulation the batch kernel replaced) is the
oracle here; ``test_kernel.py`` checks both against the plain-Python reference backtest.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from engine import backtester as backtester_module
from engine import layout as L
from engine.backtester import LocalBacktester, Window, split_windows
from engine.candles import candles_from_arrays
from engine.features import FeatureStore
from engine.genome import Genome, encode
from engine.kernel import backtest_detail_nb
from engine.kernel_batch import (
    _LANES,
    _N_STATE,
    _S_MAX_DD,
    _S_PEAK,
    _S_PREV,
    _S_SUM_DOWN2,
    _S_SUM_R,
    _S_SUM_R2,
    _account_lanes,
    _reset_lane,
    backtest_batch_nb,
    backtest_windows_nb,
)
from engine.kernel_rules import rule_table_nb
from engine.miner import mine
from engine.scoring import fold_windows
from engine.settings import RISK_PRESETS, Costs, MinerSettings, RiskLevel
from engine.space import GenomeSpace
from engine.synthetic import synthetic_candles

from .test_kernel import NO_STOP, STOP_LOSSES, rules

CASH = 10_000.0


def per_genome(genomes, matrix, lookup, start, end, fee, slip, periods_per_year):
    """Metrics of each genome from the per-genome kernel, one call per genome."""
    return np.stack([backtest_detail_nb(g, matrix, lookup, start, end, fee, slip, CASH, periods_per_year)[0]
                     for g in genomes])


def assert_identical(got, expected):
    """Every float bit equal (NaN included)."""
    assert got.shape == expected.shape
    same = got.view(np.int64) == expected.view(np.int64)
    if not same.all():
        row, column = np.argwhere(~same)[0][:2]
        pytest.fail(f"genome row {row}, column {column}: {got[row]} != {expected[row]}")


def gappy_candles(n: int, seed: int):
    """Candles whose opens jump away from the previous close (stops and targets hit at the open), with missing
    timestamps (time gaps are not filled)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.01, n) * (rng.random(n) < 0.2))
    high = np.maximum(open_, close) * (1 + rng.exponential(0.002, n))
    low = np.minimum(open_, close) * (1 - rng.exponential(0.002, n))
    steps = np.where(rng.random(n) < 0.01, 300 * rng.integers(2, 50, n), 300)
    return candles_from_arrays(1_700_000_000 + np.cumsum(steps), open_, high, low, close, rng.random(n) * 10 + 1)


@pytest.fixture(scope="module")
def datasets(btc_candles):
    return {"btc": btc_candles, "synthetic": synthetic_candles(6_000, seed=5), "gappy": gappy_candles(5_000, 3)}


@st.composite
def shared_rule_batches(draw):
    """1-8 genomes drawing their entry and exit rules from one small pool: the batch shares rules."""
    pool = draw(st.lists(rules(), min_size=1, max_size=6))
    stops = st.one_of(STOP_LOSSES, NO_STOP)
    batch = []
    for _ in range(draw(st.integers(1, 8))):
        batch.append(Genome.model_validate({
            "direction": draw(st.sampled_from(["long", "short"])),
            "entry": draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4)),
            "exit": draw(st.lists(st.sampled_from(pool), max_size=2)),
            "stop_loss": draw(stops),
            "take_profit": draw(st.one_of(st.just(0.0), st.floats(0.001, 0.2))),
            "trailing_stop": draw(st.one_of(st.just(0.0), st.floats(0.001, 0.1))),
            "size": draw(st.one_of(st.just(1.0), st.floats(0.05, 1.0))),
            "leverage": draw(st.one_of(st.just(1.0), st.floats(1.0, 5.0))),
        }))
    return np.stack([encode(g) for g in batch])


CASES = {"which": st.sampled_from(["btc", "synthetic", "gappy"]), "offset": st.floats(0, 1),
         "length": st.integers(60, 2_500), "warm": st.integers(0, 300), "fee_bps": st.sampled_from([0.0, 10.0, 60.0]),
         "slippage_bps": st.sampled_from([0.0, 5.0])}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def prepared(full, rows, offset, length, warm):
    """A slice of ``full`` (warm bars before a window of ``length``), its features, and the window."""
    first = int(offset * (len(full) - length - warm))
    candles = full.slice(first, first + warm + length)
    store = FeatureStore(candles)
    matrix, lookup = store.prepare(rows)
    return candles, matrix, lookup, warm, warm + length


@PROPERTY
@given(rows=shared_rule_batches(), **CASES)
def test_batch_equals_per_genome_kernel_alone_and_in_the_batch(datasets, rows, which, offset, length, warm, fee_bps,
                                                               slippage_bps):
    candles, matrix, lookup, start, end = prepared(datasets[which], rows, offset, length, warm)
    costs = (fee_bps / 1e4, slippage_bps / 1e4, CASH, candles.periods_per_year)
    batch = backtest_batch_nb(rows, matrix, lookup, start, end, *costs)
    assert_identical(batch, per_genome(rows, matrix, lookup, start, end, *costs[:2], costs[3]))
    for g in range(len(rows)):
        assert_identical(backtest_batch_nb(rows[g:g + 1], matrix, lookup, start, end, *costs), batch[g:g + 1])
    reversed_ = backtest_batch_nb(np.ascontiguousarray(rows[::-1]), matrix, lookup, start, end, *costs)
    assert_identical(reversed_[::-1], batch)


@PROPERTY
@given(rows=shared_rule_batches(), which=CASES["which"], offset=CASES["offset"], length=st.integers(200, 3_000),
       cuts=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=4))
def test_several_windows_in_one_call_equal_one_call_per_window(datasets, rows, which, offset, length, cuts):
    """Windows anywhere in the data, overlapping or not, the first bar of the data included."""
    candles, matrix, lookup, _, _ = prepared(datasets[which], rows, offset, length, 0)
    windows = [(int(a * (length - 2)), int(a * (length - 2)) + 2 + int(b * (length - 2 - int(a * (length - 2)))))
               for a, b in cuts]
    starts, ends = (np.array(column, dtype=np.int64) for column in zip(*windows, strict=True))
    costs = (0.006, 0.0005, CASH, candles.periods_per_year)
    out = backtest_windows_nb(rows, matrix, lookup, starts, ends, *costs)
    assert out.shape == (len(rows), len(windows), L.N_METRICS)
    for w, (start, end) in enumerate(windows):
        assert_identical(out[:, w], per_genome(rows, matrix, lookup, start, end, 0.006, 0.0005,
                                               candles.periods_per_year))


def test_the_gas_random_population_on_the_btc_training_folds(btc_candles):
    """The miner's real workload: random genomes of every risk level, the training window and its folds."""
    train, _ = split_windows(len(btc_candles), 0.2)
    rng = np.random.default_rng(18)
    rows = np.concatenate([GenomeSpace(RISK_PRESETS[risk], MinerSettings().period_menu).random_population(40, rng)
                           for risk in RiskLevel])
    store = FeatureStore(btc_candles)
    matrix, lookup = store.prepare(rows)
    windows = [train, *fold_windows(train, 4)]
    starts = np.array([w.start for w in windows], dtype=np.int64)
    ends = np.array([w.end for w in windows], dtype=np.int64)
    out = backtest_windows_nb(rows, matrix, lookup, starts, ends, 0.006, 0.0005, CASH, btc_candles.periods_per_year)
    for w, window in enumerate(windows):
        assert_identical(out[:, w], per_genome(rows, matrix, lookup, window.start, window.end, 0.006, 0.0005,
                                               btc_candles.periods_per_year))
    assert (out[:, 0, L.M_TRADES] == 0).any() and (out[:, 0, L.M_TRADES] > 100).any()  # both kinds were covered


def test_a_genome_that_never_enters_has_zero_metrics_and_a_missing_row_gives_nan():
    candles = synthetic_candles(500, seed=2)
    never = encode(Genome.model_validate({"entry": [{"left": {"indicator": "rsi", "period": 14}, "op": ">",
                                                     "right": {"constant": 101}}], "stop_loss": 0.02}))
    needs_sma = encode(Genome.model_validate({"entry": [{"left": {"field": "close"}, "op": ">",
                                                         "right": {"indicator": "sma", "period": 20}}],
                                              "stop_loss": None}))
    store = FeatureStore(candles)
    matrix, lookup = store.prepare(never[None])  # sma(20) is not prepared
    out = backtest_batch_nb(np.stack([never, needs_sma, never]), matrix, lookup, 0, 500, 0.006, 0.0, CASH, 1.0)
    assert (out[[0, 2]] == 0.0).all()
    assert np.isnan(out[1]).all()


def test_equal_rules_are_evaluated_once():
    candles = synthetic_candles(300, seed=1)
    rule = {"left": {"field": "close"}, "op": ">", "right": {"indicator": "sma", "period": 20}}
    other = {"left": {"indicator": "rsi", "period": 14}, "op": "<", "right": {"constant": 70}}
    rows = np.stack([encode(Genome.model_validate({"entry": [rule, other], "exit": [rule], "stop_loss": None})),
                     encode(Genome.model_validate({"entry": [other], "stop_loss": 0.01})),
                     encode(Genome.model_validate({"entry": [rule], "stop_loss": 0.02}))])
    _, lookup = FeatureStore(candles).prepare(rows)
    index, ok, left, *_ = rule_table_nb(rows, lookup)
    assert ok.all() and len(left) == 2
    assert index[0, L.MAX_ENTRY_RULES] == index[0, 0] == index[2, 0] and index[0, 1] == index[1, 0]


def test_a_mined_result_is_the_same_with_the_per_genome_kernel(monkeypatch):
    """Same seed, same best genome, fitness and metrics whichever kernel scores the batches."""
    candles = synthetic_candles(4_000, seed=11)
    settings_ = MinerSettings(population=24, generations=4, seed=3, batch_size=12, folds=2)
    batch = mine(candles, settings_)

    def per_genome_batch(genomes, matrix, lookup, start, end, fee, slip, cash0, periods_per_year):
        return np.stack([backtest_detail_nb(g, matrix, lookup, start, end, fee, slip, cash0, periods_per_year)[0]
                         for g in genomes])

    monkeypatch.setattr(backtester_module, "backtest_batch_nb", per_genome_batch)
    single = mine(candles, settings_)
    assert batch.best_genome == single.best_genome
    assert batch.fitness == single.fitness
    assert batch.train_metrics == single.train_metrics and batch.holdout_metrics == single.holdout_metrics


def test_local_backtester_scores_the_folds_in_one_call_as_one_call_per_fold():
    candles = synthetic_candles(3_000, seed=4)
    tester = LocalBacktester(candles, Costs())
    rows = GenomeSpace(RISK_PRESETS[RiskLevel.HIGH], MinerSettings().period_menu).random_population(
        30, np.random.default_rng(2))
    folds = fold_windows(Window(0, 2_400), 3)
    expected = np.stack([tester.evaluate(rows, window) for window in folds], axis=1)
    assert_identical(tester.evaluate_windows(rows, folds), expected)


def test_lanes_of_very_different_lengths_ruin_and_empty_streams_equal_the_per_genome_kernel():
    """The batch kernel accounts four backtests' equity streams side by side: here streams of every length in one
    call (hold-everything, a few short trades, none at all), a ruin mid-stream (leverage 5, no stop, a 40 % crash)
    while other lanes go on, a genome missing its feature row (NaN), over several windows."""
    rng = np.random.default_rng(7)
    n = 6_000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    close[3_000:] *= 0.6  # the crash: one bar's open gaps 40 % down
    open_ = np.concatenate([[100.0], close[:-1]])
    high, low = np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999
    candles = candles_from_arrays(1_700_000_000 + 300 * np.arange(n), open_, high, low, close, np.ones(n))
    above_sma = {"left": {"field": "close"}, "op": ">", "right": {"indicator": "sma", "period": 5}}
    always = {"left": {"field": "close"}, "op": ">", "right": {"constant": 0}}
    never = {"left": {"indicator": "rsi", "period": 14}, "op": ">", "right": {"constant": 101}}
    genomes = [
        {"entry": [always], "stop_loss": None, "leverage": 5.0, "size": 1.0},  # holds to the crash: ruined
        {"entry": [above_sma], "exit": [{**above_sma, "op": "<"}], "stop_loss": 0.01},  # many short trades
        {"entry": [never], "stop_loss": 0.02},  # an empty stream
        {"entry": [always], "stop_loss": None, "take_profit": 0.5},  # one long hold
        {"entry": [above_sma], "stop_loss": None, "leverage": 5.0, "size": 1.0},  # ruined later, after trades
        {"entry": [above_sma], "direction": "short", "stop_loss": 0.02, "take_profit": 0.01},
    ]
    rows = np.stack([encode(Genome.model_validate(g)) for g in genomes]
                    + list(GenomeSpace(RISK_PRESETS[RiskLevel.HIGH], MinerSettings().period_menu).random_population(
                        9, rng)))
    store = FeatureStore(candles)
    matrix, lookup = store.prepare(rows)
    missing = encode(Genome.model_validate({"entry": [{**above_sma, "right": {"indicator": "sma", "period": 200}}],
                                            "stop_loss": 0.02}))
    rows = np.concatenate([rows[:3], missing[None], rows[3:]])  # sma(200) is not in the prepared matrix
    windows = [(0, n), (2_500, 3_500), (100, 2_000), (2_999, 3_002)]
    starts, ends = (np.array(column, dtype=np.int64) for column in zip(*windows, strict=True))
    out = backtest_windows_nb(rows, matrix, lookup, starts, ends, 0.006, 0.0005, CASH, candles.periods_per_year)
    for w, (start, end) in enumerate(windows):
        expected = per_genome(rows, matrix, lookup, start, end, 0.006, 0.0005, candles.periods_per_year)
        assert_identical(out[:, w], expected)
    assert np.isnan(out[3]).all() and (out[2, :, L.M_TRADES] == 0).all()
    assert out[0, 0, L.M_RETURN_PCT] == out[5, 0, L.M_RETURN_PCT] == -100.0  # both ruined (row 5: the 5th genome)
    assert out[1, 0, L.M_TRADES] > 100  # the long stream of short trades ran beside them


def _account_scalar(value, state, lane):
    """One bar's close-marked ``value`` into ``state[:, lane]``, as the per-genome kernel's bar loop accounts it."""
    prev, peak, max_dd = state[_S_PREV, lane], state[_S_PEAK, lane], state[_S_MAX_DD, lane]
    r = value / prev - 1.0 if prev > 0.0 else 0.0
    if value > peak:
        state[_S_PEAK, lane] = value
    elif value < peak * (1.0 - max_dd):
        state[_S_MAX_DD, lane] = 1.0 - value / peak
    state[_S_PREV, lane] = value
    state[_S_SUM_R, lane] += r
    state[_S_SUM_R2, lane] += r * r
    down = min(r, 0.0)
    state[_S_SUM_DOWN2, lane] += down * down


@njit
def _account_run(streams, offset, steps, state):
    """One run of steps through the lane accounting loop (intrinsics are called from compiled code)."""
    _account_lanes(streams, offset, steps, state)


def test_the_lane_accounting_loop_equals_the_scalar_loop_over_any_segments():
    """The kernel accounts its lanes' streams in runs of steps cut wherever some lane's backtest ends: every lane's
    statistics must equal the scalar loop's bit for bit, whatever the cuts. Streams: a rise, a fall that deepens in
    most steps, plateaus that equal the peak and the trough exactly, and a ruin to 0."""
    rng = np.random.default_rng(11)
    n = 3_000
    kinds = (lambda: 10_000 * np.cumprod(1 + np.abs(rng.normal(0, 0.002, n))),  # a rise
             lambda: 10_000 * np.cumprod(1 + rng.normal(-0.001, 0.002, n)),  # a fall
             lambda: np.repeat(10_000 * np.cumprod(1 + rng.normal(0, 0.003, n // 10)), 10),  # plateaus
             lambda: np.concatenate([10_000 * np.cumprod(1 + rng.normal(0, 0.003, n // 2)), np.zeros(n - n // 2)]))
    streams = np.ascontiguousarray(np.stack([kinds[lane % len(kinds)]() for lane in range(_LANES)]))
    expected = np.zeros((_N_STATE, _LANES))
    deepened_steps = np.zeros(n, bool)
    for lane in range(_LANES):
        _reset_lane(expected, lane, 10_000.0)
        for k in range(n):  # the scalar loop a bar at a time, and its test of a deeper drawdown
            value, peak, max_dd = streams[lane, k], expected[_S_PEAK, lane], expected[_S_MAX_DD, lane]
            deepened_steps[k] |= not value > peak and value < peak * (1.0 - max_dd)
            _account_scalar(value, expected, lane)
    assert deepened_steps[:100].sum() > 5 and deepened_steps.mean() > 0.1  # the fall deepens often
    for cuts in (np.empty(0, np.int64), np.sort(rng.choice(np.arange(1, n), 12, replace=False))):
        state = np.zeros((_N_STATE, _LANES))
        for lane in range(_LANES):
            _reset_lane(state, lane, 10_000.0)
        offset = np.arange(_LANES, dtype=np.int64) * n
        for first, stop in zip([0, *cuts], [*cuts, n], strict=True):
            _account_run(streams, offset + first, stop - first, state)
        assert_identical(state, expected)
