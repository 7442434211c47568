import numpy as np

from engine.synthetic import synthetic_candles


def test_deterministic_and_valid():
    a, b = synthetic_candles(5_000, seed=7), synthetic_candles(5_000, seed=7)
    assert a.fingerprint == b.fingerprint
    assert synthetic_candles(5_000, seed=8).fingerprint != a.fingerprint
    assert a.gaps.count == 0 and a.bar_seconds == 300 and "synthetic" in a.source


def test_has_regimes_and_volume_reacting_to_moves():
    candles = synthetic_candles(30_000, seed=0)
    returns = np.diff(np.log(candles.close))
    window = 2_000
    drifts = [returns[i:i + window].sum() for i in range(0, returns.size - window, window)]
    assert max(drifts) > 0.05 and min(drifts) < -0.05  # up and down trends
    big = np.abs(returns) > np.quantile(np.abs(returns), 0.9)
    assert candles.volume[1:][big].mean() > 1.2 * candles.volume[1:][~big].mean()
