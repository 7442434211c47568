"""A hand-written Numba loop for exactly one strategy: the yardstick for the generic batch kernel.

LONG when close > SMA(20) and RSI(14) < 70; exit when close < SMA(50); 2 % stop, 4 % target. Same
fill, cost and metric semantics as ``engine.kernel`` (docs/backtest.md), long only, no trailing stop,
with the rules inlined instead of interpreted.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def fixed_strategy_nb(open_, high, low, close, sma20, rsi14, sma50, fee, slip, cash0, periods_per_year):
    """(net_pnl, trades, sharpe, max_drawdown) over all bars."""
    n = close.shape[0]
    cash = cash0
    in_pos = False
    pending = 0
    units = fill = entry_fee = stop = target = 0.0
    trades = 0
    peak = cash0
    max_dd = 0.0
    prev = cash0
    sum_r = sum_r2 = 0.0
    for i in range(n):
        exit_price = -1.0
        if pending == 1:
            fill = open_[i] * (1.0 + slip)
            units = cash / (fill * (1.0 + fee))
            entry_fee = units * fill * fee
            stop = fill * 0.98
            target = fill * 1.04
            in_pos = True
        elif pending == -1:
            exit_price = open_[i]
        pending = 0
        if in_pos and exit_price < 0.0:
            if open_[i] <= stop:
                exit_price = open_[i]
            elif low[i] <= stop:
                exit_price = stop
            elif open_[i] >= target:
                exit_price = open_[i]
            elif high[i] >= target:
                exit_price = target
            elif i == n - 1:
                exit_price = close[i]
        if in_pos and exit_price >= 0.0:
            price = exit_price * (1.0 - slip)
            cash += units * (price - fill) - entry_fee - units * price * fee
            trades += 1
            in_pos = False
        value = cash + units * (close[i] - fill) - entry_fee if in_pos else cash
        if value > peak:
            peak = value
        elif value < peak * (1.0 - max_dd):
            max_dd = 1.0 - value / peak
        r = value / prev - 1.0
        sum_r += r
        sum_r2 += r * r
        prev = value
        if i < n - 1:
            if not in_pos:
                if close[i] > sma20[i] and rsi14[i] < 70.0:
                    pending = 1
            elif close[i] < sma50[i]:
                pending = -1
    mean = sum_r / n
    std = np.sqrt(max(sum_r2 / n - mean * mean, 0.0))
    sharpe = mean / std * np.sqrt(periods_per_year) if std > 0.0 else 0.0
    return cash - cash0, trades, sharpe, max_dd
