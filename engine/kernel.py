"""Numba backtest kernels: a batch of encoded genomes in, a metrics matrix out.

Array contract:
- ``genomes``: float64 (n_genomes, GENOME_WIDTH), rows laid out as in ``engine.layout``.
- ``features``: C-contiguous float64 (n_rows, n_bars); rows 0..4 are open, high, low, close,
  volume; other rows are indicator series, NaN during warm-up (see ``engine.features``).
- ``lookup``: int64 (N_KINDS, MAX_PERIOD + 1) mapping (kind, period) to a feature row, -1 if absent.
- ``start``/``end``: the bar window [start, end) to trade; indicators may look before ``start``.
- Costs are fractions: ``fee`` per side, ``slip`` per fill (adverse).

Semantics (docs/backtest.md has the full contract): rules are evaluated at bar close; orders fill at
the next bar's open; stop-loss, trailing stop and take-profit are checked intrabar from the entry bar
on, the stop first when both are touched, at the bar's open when it opens beyond a level. One
position at a time; an open position is closed at the window's last close.

Degenerate cases are reported, not raised: a genome referring to a feature row that was never
computed gets an all-NaN metrics row, which Python turns into an error message.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.layout import (
    CLOSE,
    CONSTANT,
    CROSSES_ABOVE,
    DIRECTION,
    ENTRY_OFFSET,
    EXIT_END,
    EXIT_SIGNAL,
    EXIT_STOP,
    EXIT_TARGET,
    EXIT_TRAILING,
    GE,
    GT,
    HIGH,
    LE,
    LEVERAGE,
    LOW,
    LT,
    M_EXPOSURE,
    M_MAX_DRAWDOWN,
    M_NET_PNL,
    M_PROFIT_FACTOR,
    M_RETURN_PCT,
    M_SHARPE,
    M_SORTINO,
    M_TRADES,
    M_WIN_RATE,
    MAX_ENTRY_RULES,
    MAX_EXIT_RULES,
    N_ENTRY,
    N_EXIT,
    N_METRICS,
    N_TRADE_COLUMNS,
    OPEN,
    PROFIT_FACTOR_CAP,
    R_CONSTANT,
    R_LEFT_KIND,
    R_LEFT_PERIOD,
    R_OP,
    R_RIGHT_KIND,
    R_RIGHT_PERIOD,
    RULE_WIDTH,
    SIZE,
    STOP_LOSS,
    TAKE_PROFIT,
    TRAILING_STOP,
)

_MAX_RULES = MAX_ENTRY_RULES + MAX_EXIT_RULES


@njit(cache=True, nogil=True)
def _decode_rules_nb(genome, lookup, left, right, ops, consts):
    """Resolve rule operands to feature rows (right = -1 for a constant). False if a row is missing."""
    ok = True
    for r in range(_MAX_RULES):
        base = ENTRY_OFFSET + r * RULE_WIDTH
        used = r < genome[N_ENTRY] if r < MAX_ENTRY_RULES else r - MAX_ENTRY_RULES < genome[N_EXIT]
        if not used:
            continue
        left[r] = lookup[int(genome[base + R_LEFT_KIND]), int(genome[base + R_LEFT_PERIOD])]
        ops[r] = int(genome[base + R_OP])
        consts[r] = genome[base + R_CONSTANT]
        if int(genome[base + R_RIGHT_KIND]) == CONSTANT:
            right[r] = -1
        else:
            right[r] = lookup[int(genome[base + R_RIGHT_KIND]), int(genome[base + R_RIGHT_PERIOD])]
            ok = ok and right[r] >= 0
        ok = ok and left[r] >= 0
    return ok


@njit(cache=True, nogil=True)
def _simulate_nb(genome, features, lookup, start, end, fee, slip, cash0, periods_per_year,
                 out, record, trades, equity):
    """Backtest one genome over bars [start, end); write metrics into ``out``.

    With ``record`` the trade list goes to ``trades`` and the close-marked equity to
    ``equity[start:end]``; returns the number of trades.

    Speed: a bar that starts and ends flat changes nothing but the decision at its close (its equity
    return is exactly 0), so it takes a fast path that only evaluates the entry rules. Rules are
    evaluated inline, short-circuiting, and only the set that matters (entry when flat, exit when in
    a position).
    """
    left = np.zeros(_MAX_RULES, np.int64)
    right = np.zeros(_MAX_RULES, np.int64)
    ops = np.zeros(_MAX_RULES, np.int64)
    consts = np.zeros(_MAX_RULES)
    if not _decode_rules_nb(genome, lookup, left, right, ops, consts):
        out[:] = np.nan
        return 0
    n_entry = int(genome[N_ENTRY])
    n_exit = int(genome[N_EXIT])
    d = genome[DIRECTION]
    size = genome[SIZE] * genome[LEVERAGE]
    stop_loss = genome[STOP_LOSS]
    take_profit = genome[TAKE_PROFIT]
    trail = genome[TRAILING_STOP]
    o_row = lookup[OPEN, 0]
    h_row = lookup[HIGH, 0]
    l_row = lookup[LOW, 0]
    c_row = lookup[CLOSE, 0]

    cash = cash0
    ruined = False
    in_pos = False
    pending = 0  # +1 enter at next open, -1 exit at next open
    units = fill = entry_fee = stop_level = target_level = extreme = 0.0
    entry_bar = 0
    n_trades = wins = exposure = 0
    gross_profit = gross_loss = 0.0
    peak = cash0
    max_dd = 0.0
    prev_equity = cash0
    sum_r = sum_r2 = sum_down2 = 0.0

    for i in range(start, end):
        if not in_pos and pending == 0:
            if record:
                equity[i] = cash
        else:
            bar_open = features[o_row, i]
            bar_high = features[h_row, i]
            bar_low = features[l_row, i]
            bar_close = features[c_row, i]
            exit_price = np.nan
            reason = EXIT_SIGNAL
            if pending == 1:
                fill = bar_open * (1.0 + d * slip)
                units = size * cash / (fill * (1.0 + fee))
                entry_fee = units * fill * fee
                stop_level = fill * (1.0 - d * stop_loss)
                target_level = fill * (1.0 + d * take_profit)
                extreme = fill
                entry_bar = i
                in_pos = True
            elif pending == -1:
                exit_price = bar_open
            pending = 0

            if in_pos and np.isnan(exit_price):
                exposure += 1
                stop = stop_level
                reason = EXIT_STOP
                if trail > 0.0:
                    trailing = extreme * (1.0 - d * trail)
                    if d * (trailing - stop) > 0.0:
                        stop = trailing
                        reason = EXIT_TRAILING
                # d * (price - level) <= 0 means "at or beyond the stop" for both directions.
                if d * (bar_open - stop) <= 0.0:
                    exit_price = bar_open
                elif d * ((bar_low if d > 0 else bar_high) - stop) <= 0.0:
                    exit_price = stop
                elif take_profit > 0.0 and d * (bar_open - target_level) >= 0.0:
                    exit_price = bar_open
                    reason = EXIT_TARGET
                elif take_profit > 0.0 and d * ((bar_high if d > 0 else bar_low) - target_level) >= 0.0:
                    exit_price = target_level
                    reason = EXIT_TARGET
                else:
                    extreme = max(extreme, bar_high) if d > 0 else min(extreme, bar_low)
                    if i == end - 1:
                        exit_price = bar_close
                        reason = EXIT_END
            elif in_pos:
                exposure += 1  # exited at this bar's open on a signal from the previous close

            if in_pos and not np.isnan(exit_price):
                price = exit_price * (1.0 - d * slip)
                pnl = d * units * (price - fill) - entry_fee - units * price * fee
                cash += pnl
                if pnl > 0.0:
                    wins += 1
                    gross_profit += pnl
                else:
                    gross_loss -= pnl
                if record:
                    row = trades[n_trades]
                    row[0] = entry_bar
                    row[1] = i
                    row[2] = fill
                    row[3] = price
                    row[4] = units
                    row[5] = pnl
                    row[6] = reason
                n_trades += 1
                in_pos = False
                if cash <= 0.0:
                    cash = 0.0
                    ruined = True

            value = cash + d * units * (bar_close - fill) - entry_fee if in_pos else cash
            if record:
                equity[i] = value
            if value > peak:
                peak = value
            elif value < peak * (1.0 - max_dd):
                max_dd = 1.0 - value / peak
            r = value / prev_equity - 1.0 if prev_equity > 0.0 else 0.0
            sum_r += r
            sum_r2 += r * r
            down = min(r, 0.0)
            sum_down2 += down * down
            prev_equity = value

        if i < end - 1 and not ruined:
            first = MAX_ENTRY_RULES if in_pos else 0
            count = n_exit if in_pos else n_entry
            holds = count > 0
            for k in range(first, first + count):
                a = features[left[k], i]
                b = consts[k] if right[k] < 0 else features[right[k], i]
                op = ops[k]
                if op == GT:
                    holds = a > b
                elif op == GE:
                    holds = a >= b
                elif op == LT:
                    holds = a < b
                elif op == LE:
                    holds = a <= b
                elif i == 0:
                    holds = False
                else:  # NaN compares false, so undefined operands never signal
                    a0 = features[left[k], i - 1]
                    b0 = consts[k] if right[k] < 0 else features[right[k], i - 1]
                    holds = (a > b and a0 <= b0) if op == CROSSES_ABOVE else (a < b and a0 >= b0)
                if not holds:
                    break
            if holds:
                pending = -1 if in_pos else 1

    n_bars = max(end - start, 1)
    mean = sum_r / n_bars
    std = np.sqrt(max(sum_r2 / n_bars - mean * mean, 0.0))
    downside = np.sqrt(sum_down2 / n_bars)
    annual = np.sqrt(periods_per_year)
    out[M_NET_PNL] = cash - cash0
    out[M_RETURN_PCT] = 100.0 * (cash - cash0) / cash0
    out[M_TRADES] = n_trades
    out[M_WIN_RATE] = wins / n_trades if n_trades > 0 else 0.0
    out[M_MAX_DRAWDOWN] = max_dd
    out[M_SHARPE] = mean / std * annual if std > 0.0 else 0.0
    out[M_SORTINO] = mean / downside * annual if downside > 0.0 else 0.0
    if gross_loss > 0.0:
        out[M_PROFIT_FACTOR] = min(gross_profit / gross_loss, PROFIT_FACTOR_CAP)
    else:
        out[M_PROFIT_FACTOR] = PROFIT_FACTOR_CAP if gross_profit > 0.0 else 0.0
    out[M_EXPOSURE] = exposure / n_bars
    return n_trades


@njit(cache=True, nogil=True)
def backtest_batch_nb(genomes, features, lookup, start, end, fee, slip, cash0, periods_per_year):
    """Metrics (n_genomes, N_METRICS) for a batch of genomes over bars [start, end)."""
    n = genomes.shape[0]
    out = np.empty((n, N_METRICS))
    no_trades = np.empty((0, N_TRADE_COLUMNS))
    no_equity = np.empty(0)
    for g in range(n):
        _simulate_nb(genomes[g], features, lookup, start, end, fee, slip, cash0, periods_per_year,
                     out[g], False, no_trades, no_equity)
    return out


@njit(cache=True, nogil=True)
def backtest_detail_nb(genome, features, lookup, start, end, fee, slip, cash0, periods_per_year):
    """(metrics, trades (k, N_TRADE_COLUMNS), equity over [start, end)) for one genome."""
    out = np.empty(N_METRICS)
    trades = np.empty((max(end - start, 1), N_TRADE_COLUMNS))
    equity = np.zeros(features.shape[1])
    k = _simulate_nb(genome, features, lookup, start, end, fee, slip, cash0, periods_per_year,
                     out, True, trades, equity)
    return out, trades[:k].copy(), equity[start:end].copy()
