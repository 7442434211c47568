"""A hand-written Numba loop for exactly one strategy: the yardstick for the generic batch kernel.

LONG when close > SMA(20) and RSI(14) < 70; exit when close < SMA(50); 2 % stop, 4 % target. Same
fill, cost and metric semantics as ``engine.kernel`` (docs/backtest.md), long only, no trailing stop,
with the rules inlined instead of interpreted, and the same thirteen metrics out (the benchmark checks
they agree), so the comparison is like for like.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def fixed_strategy_nb(open_, high, low, close, sma20, rsi14, sma50, fee, slip, cash0, periods_per_year):
    """The thirteen metrics of ``engine.layout.METRICS``, over all bars."""
    n = close.shape[0]
    cash = cash0
    in_pos = False
    pending = 0
    units = fill = entry_fee = stop = target = 0.0
    trades = wins = exposure = 0
    gross_profit = gross_loss = 0.0
    sum_down2 = 0.0
    entry_bar = 0
    peak = cash0
    max_dd = 0.0
    prev = cash0
    sum_r = sum_r2 = 0.0
    trade_mean = trade_m2 = 0.0  # Welford over per-trade returns
    for i in range(n):
        exit_price = -1.0
        if pending == 1:
            fill = open_[i] * (1.0 + slip)
            units = cash / (fill * (1.0 + fee))
            entry_fee = units * fill * fee
            stop = fill * 0.98
            target = fill * 1.04
            entry_bar = i
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
            pnl = units * (price - fill) - entry_fee - units * price * fee
            trade_return = pnl / cash
            cash += pnl
            trades += 1
            delta = trade_return - trade_mean
            trade_mean += delta / trades
            trade_m2 += delta * (trade_return - trade_mean)
            exposure += i - entry_bar + 1
            if pnl > 0.0:
                wins += 1
                gross_profit += pnl
            else:
                gross_loss -= pnl
            in_pos = False
        value = cash + units * (close[i] - fill) - entry_fee if in_pos else cash
        if value > peak:
            peak = value
        elif value < peak * (1.0 - max_dd):
            max_dd = 1.0 - value / peak
        r = value / prev - 1.0
        sum_r += r
        sum_r2 += r * r
        down = min(r, 0.0)
        sum_down2 += down * down
        prev = value
        if i < n - 1:
            if not in_pos:
                if close[i] > sma20[i] and rsi14[i] < 70.0:
                    pending = 1
            elif close[i] < sma50[i]:
                pending = -1
    mean = sum_r / n
    std = np.sqrt(max(sum_r2 / n - mean * mean, 0.0))
    downside = np.sqrt(sum_down2 / n)
    annual = np.sqrt(periods_per_year)
    sharpe = mean / std * annual if std > 0.0 else 0.0
    sortino = mean / downside * annual if downside > 0.0 else 0.0
    capped = 100.0 if gross_profit > 0.0 else 0.0
    profit_factor = min(gross_profit / gross_loss, 100.0) if gross_loss > 0.0 else capped
    win_rate = wins / trades if trades > 0 else 0.0
    trade_std = np.sqrt(trade_m2 / (trades - 1)) if trades > 1 else 0.0
    t_stat = trade_mean / trade_std * np.sqrt(trades) if trade_std > 1e-9 * abs(trade_mean) else 0.0
    squares = trade_m2 + trades * trade_mean * trade_mean
    z = trades * trade_mean / np.sqrt(squares) if squares > 0.0 else 0.0
    bar_z = sum_r / np.sqrt(sum_r2) if sum_r2 > 0.0 else 0.0
    return np.array([cash - cash0, 100.0 * (cash - cash0) / cash0, trades, win_rate, max_dd, sharpe, sortino,
                     profit_factor, exposure / n, trade_mean, t_stat, z, bar_z])
