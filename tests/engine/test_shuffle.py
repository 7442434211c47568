import numpy as np
import pandas as pd

from engine.candles import candles_from_arrays
from engine.shuffle import segment_starts, shuffled_copy
from engine.synthetic import synthetic_candles


def gapped_candles():
    """Synthetic candles with two time gaps, like the real BTC file."""
    base = synthetic_candles(3_000, seed=9)
    ts = base.timestamp.copy()
    ts[1_000:] += 3_600
    ts[2_200:] += 7_200
    return candles_from_arrays(ts, base.open, base.high, base.low, base.close, base.volume, source="gapped")


def log_returns(c):
    return np.log(c.close[1:] / c.close[:-1])


def test_the_moves_are_shuffled_across_the_whole_window_and_those_across_a_gap_stay_put():
    candles = gapped_candles()
    copy = shuffled_copy(candles, 2_800, np.random.default_rng(1))
    assert len(copy) == 2_800
    assert np.array_equal(copy.timestamp, candles.timestamp[:2_800])
    assert segment_starts(copy.timestamp, copy.bar_seconds).tolist() == [0, 1_000, 2_200]
    original, shuffled = log_returns(candles.slice(0, 2_800)), log_returns(copy)
    gap_moves = [999, 2_199]  # the moves of the bars right after each gap
    for move in gap_moves:
        assert np.isclose(original[move], shuffled[move], atol=1e-12)
    rest = np.setdiff1d(np.arange(original.size), gap_moves)
    assert np.allclose(np.sort(original[rest]), np.sort(shuffled[rest]), atol=1e-12)  # the same moves
    assert not np.allclose(original[rest], shuffled[rest])  # in another order
    # across the stretches between gaps, not within each: the first stretch's moves end up all over the window
    first_stretch = set(np.round(original[:999], 12).tolist())
    landed = np.isin(np.round(shuffled[rest], 12), list(first_stretch))
    assert 0.25 < landed[999 - 1:].sum() / landed.sum() < 0.8
    assert np.array_equal(np.sort(copy.volume), np.sort(candles.volume[:2_800]))
    assert copy.close[0] == candles.close[0]


def test_on_data_with_a_gap_every_few_bars_a_trend_does_not_survive_in_the_copies():
    """Weekday bars: every weekend is a gap, so stretches are five bars long; shuffled within them alone, a
    persistent trend survived in every copy and the test could not tell the real data from its copies."""
    days = np.array([int(day.timestamp()) for day in pd.bdate_range("2020-01-01", periods=2_000)])
    rng = np.random.default_rng(4)
    drift = np.repeat(rng.choice([-0.004, 0.004], size=40), 50)  # regimes of 50 days: momentum
    close = 100 * np.exp(np.cumsum(drift + rng.normal(0, 0.01, size=days.size)))
    candles = candles_from_arrays(days, close, close * 1.001, close * 0.999, close, np.ones(days.size))

    def momentum(c) -> float:
        """Correlation of the past 20 days' return with the next 20 days'."""
        r = np.log(c.close)
        return float(np.corrcoef(r[20:-20] - r[:-40], r[40:] - r[20:-20])[0, 1])

    assert momentum(candles) > 0.5
    copies = [momentum(shuffled_copy(candles, len(candles), np.random.default_rng(k))) for k in range(5)]
    assert max(abs(m) for m in copies) < 0.2, copies


def test_bar_shapes_travel_with_their_return():
    candles = gapped_candles()
    copy = shuffled_copy(candles, 3_000, np.random.default_rng(2))

    def shapes(c):
        prev = c.close[:-1]
        return np.stack([np.log(c.close[1:] / prev), np.log(c.open[1:] / prev), np.log(c.high[1:] / prev),
                         np.log(c.low[1:] / prev), c.volume[1:]], axis=1)

    key = lambda rows: rows[np.lexsort(rows.T[::-1])]  # noqa: E731
    assert np.allclose(key(shapes(candles)), key(shapes(copy)), atol=1e-9)


def test_same_generator_state_same_copy():
    candles = synthetic_candles(2_000, seed=3)
    a = shuffled_copy(candles, 1_500, np.random.default_rng(7))
    b = shuffled_copy(candles, 1_500, np.random.default_rng(7))
    c = shuffled_copy(candles, 1_500, np.random.default_rng(8))
    assert a.fingerprint == b.fingerprint != c.fingerprint
