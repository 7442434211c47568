"""Each Numba indicator against a plain pandas formula of the same definition."""

import numpy as np
import pandas as pd
import pytest

from engine import indicators as ind
from engine import layout as L
from engine.features import FeatureStore, compute_indicator, operand_pairs
from engine.genome import Genome, encode
from engine.synthetic import synthetic_candles

PERIODS = [2, 3, 14, 20, 50, 200, 500]


@pytest.fixture(scope="module")
def candles():
    return synthetic_candles(3_000, seed=11)


def seeded_ewm(x: pd.Series, p: int, alpha: float) -> pd.Series:
    """Recursive average seeded with the mean of the first p defined values, pandas style."""
    x = x.dropna()
    out = pd.Series(np.nan, index=x.index)
    if len(x) < p:
        return out.reindex(range(x.index.max() + 1 if len(x) else 0))
    seeded = x.iloc[p - 1:].copy()
    seeded.iloc[0] = x.iloc[:p].mean()
    out.loc[seeded.index] = seeded.ewm(alpha=alpha, adjust=False).mean()
    return out


def pandas_ema(x: pd.Series, p: int) -> np.ndarray:
    return seeded_ewm(x, p, 2 / (p + 1)).reindex(x.index).to_numpy()


def pandas_rsi(close: pd.Series, p: int) -> np.ndarray:
    change = close.diff()
    gain = seeded_ewm(change.clip(lower=0), p, 1 / p).reindex(close.index)
    loss = seeded_ewm((-change).clip(lower=0), p, 1 / p).reindex(close.index)
    rsi = 100 - 100 / (1 + gain / loss)
    rsi[(loss == 0) & (gain > 0)] = 100.0
    rsi[(loss == 0) & (gain == 0)] = 50.0
    return rsi.to_numpy()


def pandas_atr(high: pd.Series, low: pd.Series, close: pd.Series, p: int) -> np.ndarray:
    prev = close.shift()
    tr = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(axis=1, skipna=False)
    return seeded_ewm(tr, p, 1 / p).reindex(close.index).to_numpy()


def frame(candles):
    return {name: pd.Series(getattr(candles, name)) for name in ("open", "high", "low", "close", "volume")}


@pytest.mark.parametrize("p", PERIODS)
def test_sma_and_volume_sma(candles, p):
    s = frame(candles)
    np.testing.assert_allclose(compute_indicator(candles, L.SMA, p), s["close"].rolling(p).mean(), rtol=1e-9)
    np.testing.assert_allclose(compute_indicator(candles, L.VOLUME_SMA, p), s["volume"].rolling(p).mean(),
                               rtol=1e-9)


@pytest.mark.parametrize("p", PERIODS)
def test_ema_seeded_with_sma(candles, p):
    s = frame(candles)
    np.testing.assert_allclose(compute_indicator(candles, L.EMA, p), pandas_ema(s["close"], p), rtol=1e-9)


@pytest.mark.parametrize("p", PERIODS)
def test_rsi_wilder(candles, p):
    s = frame(candles)
    np.testing.assert_allclose(compute_indicator(candles, L.RSI, p), pandas_rsi(s["close"], p), rtol=1e-9)


@pytest.mark.parametrize("p", PERIODS)
def test_atr_wilder(candles, p):
    s = frame(candles)
    np.testing.assert_allclose(compute_indicator(candles, L.ATR, p),
                               pandas_atr(s["high"], s["low"], s["close"], p), rtol=1e-9)


@pytest.mark.parametrize("p", PERIODS)
def test_bollinger_percent_b(candles, p):
    """numpy windows, not pandas' rolling std: its running sums lose ~1e-6 at prices near 6e4."""
    close = candles.close
    windows = np.lib.stride_tricks.sliding_window_view(close, p)
    mid, std = windows.mean(axis=1), windows.std(axis=1)
    expected = np.concatenate([np.full(p - 1, np.nan), (close[p - 1:] - (mid - 2 * std)) / (4 * std)])
    np.testing.assert_allclose(compute_indicator(candles, L.BB_PCTB, p), expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("p", [2, 12, 50, 200])
def test_macd_histogram(candles, p):
    close = frame(candles)["close"]
    fast, slow, signal = ind.macd_periods(p)
    macd = pd.Series(pandas_ema(close, fast) - pandas_ema(close, slow))
    expected = macd - pd.Series(pandas_ema(macd, signal))
    np.testing.assert_allclose(compute_indicator(candles, L.MACD_HIST, p), expected, rtol=1e-7, atol=1e-9)


def test_macd_periods_are_classic_at_twelve():
    assert ind.macd_periods(12) == (12, 26, 9)


@pytest.mark.parametrize("p", PERIODS)
def test_rate_of_change(candles, p):
    close = frame(candles)["close"]
    np.testing.assert_allclose(compute_indicator(candles, L.ROC, p), 100 * close.pct_change(p), rtol=1e-9)


@pytest.mark.parametrize("kind", sorted(L.INDICATORS.values()))
def test_warm_up_is_nan_then_defined(candles, kind):
    series = compute_indicator(candles, kind, 20)
    first = int(np.flatnonzero(~np.isnan(series))[0])
    assert np.isnan(series[:first]).all() and not np.isnan(series[first:]).any()
    assert first >= 19


def test_short_series_is_all_nan():
    short = synthetic_candles(10, seed=1)
    for kind in L.INDICATORS.values():
        assert np.isnan(compute_indicator(short, kind, 50)).all()


def test_rejects_period_out_of_range(candles):
    with pytest.raises(ValueError, match=r"outside 2\.\.500"):
        compute_indicator(candles, L.SMA, 501)


def test_feature_store_computes_each_indicator_once(candles, monkeypatch):
    store = FeatureStore(candles, capacity=1)
    calls = []
    real = compute_indicator

    def counting(c, kind, period):
        calls.append((kind, period))
        return real(c, kind, period)

    monkeypatch.setattr("engine.features.compute_indicator", counting)
    genome = Genome.model_validate({
        "entry": [{"left": {"indicator": "sma", "period": 20}, "op": ">", "right": {"indicator": "ema", "period": 7}},
                  {"left": {"indicator": "rsi", "period": 14}, "op": "<", "right": {"constant": 30}}],
        "exit": [{"left": {"field": "close"}, "op": "<", "right": {"indicator": "sma", "period": 20}}],
        "stop_loss": 0.02})
    batch = np.stack([encode(genome)] * 5)
    assert set(map(tuple, operand_pairs(batch).tolist())) == {(L.SMA, 20), (L.EMA, 7), (L.RSI, 14)}
    for _ in range(3):
        matrix, lookup = store.prepare(batch)
    assert sorted(calls) == sorted([(L.SMA, 20), (L.EMA, 7), (L.RSI, 14)])
    np.testing.assert_array_equal(matrix[lookup[L.RSI, 14]], compute_indicator(candles, L.RSI, 14))
    np.testing.assert_array_equal(matrix[lookup[L.CLOSE, 0]], candles.close)


def test_a_store_started_from_shared_tables_copies_only_when_it_must(candles):
    source = FeatureStore(candles)
    source.ensure_menu((5, 20))
    matrix, lookup = source.tables()
    matrix.flags.writeable = False  # as it comes out of Ray's object store
    store = FeatureStore(candles, shared=(matrix, lookup))
    store.prepare(np.stack([encode(Genome.model_validate({
        "entry": [{"left": {"indicator": "rsi", "period": 20}, "op": "<", "right": {"constant": 30}}],
        "stop_loss": 0.02}))]))  # rsi(20) is in the shared tables: nothing computed, nothing copied
    assert not store.owns_rows and np.shares_memory(store.matrix, matrix)
    np.testing.assert_array_equal(store.matrix[store.lookup[L.RSI, 20]], compute_indicator(candles, L.RSI, 20))
    store.ensure({(L.RSI, 7)})  # not in the shared tables: copy, then append
    assert store.owns_rows and source.lookup[L.RSI, 7] == -1
    np.testing.assert_array_equal(store.matrix[store.lookup[L.RSI, 7]], compute_indicator(candles, L.RSI, 7))
    np.testing.assert_array_equal(store.matrix[store.lookup[L.SMA, 5]], compute_indicator(candles, L.SMA, 5))
