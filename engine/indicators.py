"""Technical indicators as Numba kernels.

Array contract: every function takes 1-D float64 arrays of equal length ``n`` (oldest bar first) and
an integer period ``p`` (2..500 in practice; any p >= 1 works), and returns a new float64 array of
length ``n``. Warm-up bars, where the indicator is not yet defined, are NaN; inputs are assumed
finite (``Candles`` guarantees it). A series shorter than the warm-up is all NaN.

Definitions (first defined index in brackets):
- SMA(p) [p-1]: mean of the last p values.
- EMA(p) [p-1]: seeded with SMA(p) at index p-1, then alpha = 2 / (p + 1).
- RSI(p) [p] (Wilder): changes d_i = c_i - c_{i-1}; the first average gain/loss is the mean of the
  first p gains/losses, then avg = (avg * (p - 1) + x) / p. RSI = 100 - 100 / (1 + gain / loss);
  100 when loss is 0 and gain > 0, 50 when both are 0.
- ATR(p) [p] (Wilder): true range TR_i = max(h_i - l_i, |h_i - c_{i-1}|, |l_i - c_{i-1}|) from i = 1,
  seeded with the mean of TR_1..TR_p, then Wilder smoothing.
- Bollinger %B(p) [p-1]: (c - lower) / (upper - lower) with bands SMA(p) +/- 2 population standard
  deviations; NaN when the bands coincide.
- MACD histogram(p) [slow + signal - 2]: fast = p, slow = round(13p/6), signal = max(2, round(3p/4))
  (so p = 12 gives the classic 12/26/9); MACD = EMA(fast) - EMA(slow), signal = EMA(signal) of MACD
  seeded with the SMA of its first values, histogram = MACD - signal.
- ROC(p) [p]: 100 * (c_i / c_{i-p} - 1), in percent.
- Volume SMA(p): SMA(p) of volume.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BOLLINGER_WIDTH = 2.0


def macd_periods(p: int) -> tuple[int, int, int]:
    """(fast, slow, signal) periods of MACD histogram(p)."""
    return p, (13 * p + 3) // 6, max(2, (3 * p + 2) // 4)


@njit(cache=True, nogil=True)
def sma_nb(x, p):
    n = x.shape[0]
    out = np.full(n, np.nan)
    if p > n:
        return out
    total = 0.0
    for i in range(p):
        total += x[i]
    out[p - 1] = total / p
    for i in range(p, n):
        total += x[i] - x[i - p]
        out[i] = total / p
    return out


@njit(cache=True, nogil=True)
def ema_nb(x, p):
    """EMA over x from its first finite stretch: NaNs at the start are skipped (MACD's signal line)."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    first = 0
    while first < n and np.isnan(x[first]):
        first += 1
    if first + p > n:
        return out
    total = 0.0
    for i in range(first, first + p):
        total += x[i]
    prev = total / p
    out[first + p - 1] = prev
    alpha = 2.0 / (p + 1.0)
    for i in range(first + p, n):
        prev = alpha * x[i] + (1.0 - alpha) * prev
        out[i] = prev
    return out


@njit(cache=True, nogil=True)
def _rsi_value(gain, loss):
    if loss == 0.0:
        return 100.0 if gain > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + gain / loss)


@njit(cache=True, nogil=True)
def rsi_nb(close, p):
    n = close.shape[0]
    out = np.full(n, np.nan)
    if p >= n:
        return out
    gain = 0.0
    loss = 0.0
    for i in range(1, p + 1):
        change = close[i] - close[i - 1]
        if change > 0.0:
            gain += change
        else:
            loss -= change
    gain /= p
    loss /= p
    out[p] = _rsi_value(gain, loss)
    for i in range(p + 1, n):
        change = close[i] - close[i - 1]
        gain = (gain * (p - 1) + max(change, 0.0)) / p
        loss = (loss * (p - 1) + max(-change, 0.0)) / p
        out[i] = _rsi_value(gain, loss)
    return out


@njit(cache=True, nogil=True)
def _true_range(high, low, close, i):
    return max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))


@njit(cache=True, nogil=True)
def atr_nb(high, low, close, p):
    n = close.shape[0]
    out = np.full(n, np.nan)
    if p >= n:
        return out
    total = 0.0
    for i in range(1, p + 1):
        total += _true_range(high, low, close, i)
    prev = total / p
    out[p] = prev
    for i in range(p + 1, n):
        prev = (prev * (p - 1) + _true_range(high, low, close, i)) / p
        out[i] = prev
    return out


@njit(cache=True, nogil=True)
def bb_pctb_nb(close, p):
    """Two passes per window (mean, then squared deviations): exact enough for prices near 1e5."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    mean = sma_nb(close, p)
    for i in range(p - 1, n):
        var = 0.0
        for j in range(i - p + 1, i + 1):
            d = close[j] - mean[i]
            var += d * d
        std = np.sqrt(var / p)
        if std > 0.0:
            lower = mean[i] - BOLLINGER_WIDTH * std
            out[i] = (close[i] - lower) / (2.0 * BOLLINGER_WIDTH * std)
    return out


@njit(cache=True, nogil=True)
def macd_hist_nb(close, fast, slow, signal):
    macd = ema_nb(close, fast) - ema_nb(close, slow)
    return macd - ema_nb(macd, signal)


@njit(cache=True, nogil=True)
def roc_nb(close, p):
    n = close.shape[0]
    out = np.full(n, np.nan)
    for i in range(p, n):
        out[i] = 100.0 * (close[i] / close[i - p] - 1.0)
    return out
