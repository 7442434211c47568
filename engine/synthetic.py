"""Deterministic synthetic candles: the embedded default when no data file is configured.

A Markov chain switches between bull, bear and sideways regimes, each with its own drift and
volatility; volatility clusters (GARCH-like), and volume follows a daily cycle and rises with the
size of the move. Same seed, same candles, on any machine.
"""

from __future__ import annotations

import numpy as np

from engine.candles import Candles, candles_from_arrays

# regime: (drift per bar, base volatility per bar, mean length in bars)
_REGIMES = ((0.00004, 0.0018, 3000), (-0.00005, 0.0024, 2000), (0.0, 0.0012, 2500))
SYNTHETIC_SOURCE = "synthetic"


def synthetic_candles(n_bars: int = 30_000, seed: int = 0, *, start_time: int = 1_735_689_600,
                      bar_seconds: int = 300, start_price: float = 60_000.0) -> Candles:
    """``n_bars`` candles starting at ``start_time`` (default 2025-01-01 UTC), one per ``bar_seconds``."""
    if n_bars < 2:
        raise ValueError(f"n_bars must be at least 2, got {n_bars}")
    rng = np.random.Generator(np.random.PCG64(seed))
    returns = np.empty(n_bars)
    vol_scale = np.empty(n_bars)
    regime, variance = 0, 1.0
    for i in range(n_bars):
        drift, sigma, length = _REGIMES[regime]
        if rng.random() < 1.0 / length:
            regime = int(rng.integers(len(_REGIMES)))
        shock = rng.standard_normal()
        variance = 0.05 + 0.90 * variance + 0.05 * shock * shock  # unit-mean GARCH(1,1)
        vol_scale[i] = sigma * np.sqrt(variance)
        returns[i] = drift + vol_scale[i] * shock
    close = start_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[start_price], close[:-1]])
    wick = np.abs(rng.standard_normal((2, n_bars))) * vol_scale * 0.6
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    timestamp = start_time + bar_seconds * np.arange(n_bars, dtype=np.int64)
    hour = (timestamp % 86_400) / 3_600.0
    daily = 1.0 + 0.5 * np.sin(2 * np.pi * (hour - 9.0) / 24.0)
    volume = 20.0 * daily * (1.0 + 250.0 * np.abs(returns)) * rng.lognormal(0.0, 0.4, n_bars)
    return candles_from_arrays(timestamp, open_, high, low, close, volume,
                               source=f"{SYNTHETIC_SOURCE}(seed={seed}, bars={n_bars})")
