import itertools

import numpy as np

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


def test_each_segment_keeps_its_moves_and_the_gaps_stay_put():
    candles = gapped_candles()
    copy = shuffled_copy(candles, 2_800, np.random.default_rng(1))
    assert len(copy) == 2_800
    assert np.array_equal(copy.timestamp, candles.timestamp[:2_800])
    starts = segment_starts(copy.timestamp, copy.bar_seconds).tolist()
    assert starts == [0, 1_000, 2_200]
    original, shuffled = log_returns(candles.slice(0, 2_800)), log_returns(copy)
    bounds = [*starts, 2_800]
    for first, stop in itertools.pairwise(bounds):
        a, b = original[first:stop - 1], shuffled[first:stop - 1]
        assert np.allclose(np.sort(a), np.sort(b), atol=1e-12)  # the same multiset of returns
        assert not np.allclose(a, b)  # in another order
    for gap_bar in (1_000, 2_200):  # the move across a gap is not shuffled
        assert np.isclose(original[gap_bar - 1], shuffled[gap_bar - 1], atol=1e-12)
    assert np.array_equal(np.sort(copy.volume), np.sort(candles.volume[:2_800]))
    assert copy.close[0] == candles.close[0]


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
