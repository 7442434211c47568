"""The per-genome Numba backtest kernel: one encoded genome in, its metrics, trades and equity curve out.

``engine.kernel_batch`` scores batches (rules shared as bitsets across the batch); its metrics equal this
kernel's bit for bit, and this one records the trade list and equity curve of a report.

Array contract:
- ``genome``: float64 (GENOME_WIDTH,), laid out as in ``engine.layout``.
- ``features``: C-contiguous float64 (n_rows, n_bars); rows 0..4 are open, high, low, close,
  volume; other rows are indicator series, NaN during warm-up (see ``engine.features``).
- ``lookup``: int64 (N_KINDS, MAX_PERIOD + 1) mapping (kind, period) to a feature row, -1 if absent.
- ``start``/``end``: the bar window [start, end) to trade; indicators may look before ``start``.
- Costs are fractions: ``fee`` per side, ``slip`` per fill (adverse).

Semantics (docs/backtest.md has the full contract): rules are evaluated at bar close; orders fill at
the next bar's open; stop-loss, trailing stop and take-profit are checked intrabar from the entry bar
on, the stop first when both are touched, at the bar's open when it opens beyond a level; a level
switched off (0) sits at infinity, where no price reaches it. One position at a time; an open
position is closed at the window's last close.

Degenerate cases are reported, not raised: a genome referring to a feature row that was never
computed gets an all-NaN metrics row, which ``LocalBacktester.evaluate`` turns into an error naming the genome.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from engine.layout import (
    CLOSE,
    CONSTANT,
    CROSSES_ABOVE,
    DIRECTION,
    ENTRY_OFFSET,
    EQUAL_RETURNS_TOLERANCE,
    EXIT_END,
    EXIT_SIGNAL,
    EXIT_STOP,
    EXIT_TARGET,
    EXIT_TRAILING,
    GE,
    GT,
    HIGH,
    LEVERAGE,
    LOW,
    LT,
    M_AVG_TRADE_RETURN,
    M_BAR_Z,
    M_EXPOSURE,
    M_MAX_DRAWDOWN,
    M_NET_PNL,
    M_PROFIT_FACTOR,
    M_RETURN_PCT,
    M_SHARPE,
    M_SORTINO,
    M_TRADE_T_STAT,
    M_TRADE_Z,
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
    T_ENTRY_BAR,
    T_ENTRY_PRICE,
    T_EXIT_BAR,
    T_EXIT_PRICE,
    T_EXIT_REASON,
    T_PNL,
    T_UNITS,
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


def _at(b, i):
    """``b[i]`` for a series, ``b`` itself for a constant (specialised at compile time)."""
    return b[i] if isinstance(b, np.ndarray) else b


@overload(_at, inline="always")
def _at_overload(b, i):
    if isinstance(b, types.Array):
        return lambda b, i: b[i]
    return lambda b, i: b


def _window(b, start, end):
    """``b[start:end]`` for a series, ``b`` itself for a constant."""
    return b[start:end] if isinstance(b, np.ndarray) else b


@overload(_window, inline="always")
def _window_overload(b, start, end):
    if isinstance(b, types.Array):
        return lambda b, start, end: b[start:end]
    return lambda b, start, end: b


@njit(cache=True, nogil=True)
def _and_rule_nb(a, b, op, start, end, sig):
    """sig[start:end] &= (a op b), b a series or a constant. NaN compares false: undefined never signals.

    The loops run over zero-based slices so LLVM can prove the indices non-negative and vectorise them.
    """
    if op >= CROSSES_ABOVE:
        if start == 0:
            sig[0] = 0  # a cross needs the bar before
            start = 1
        if start >= end:
            return
        s = sig[start:end]
        x = a[start:end]
        y = _window(b, start, end)
        xp = a[start - 1:end - 1]
        yp = _window(b, start - 1, end - 1)
        if op == CROSSES_ABOVE:
            for i in range(s.shape[0]):
                s[i] &= (x[i] > _at(y, i)) & (xp[i] <= _at(yp, i))
        else:
            for i in range(s.shape[0]):
                s[i] &= (x[i] < _at(y, i)) & (xp[i] >= _at(yp, i))
        return
    s = sig[start:end]
    x = a[start:end]
    y = _window(b, start, end)
    if op == GT:
        for i in range(s.shape[0]):
            s[i] &= x[i] > _at(y, i)
    elif op == GE:
        for i in range(s.shape[0]):
            s[i] &= x[i] >= _at(y, i)
    elif op == LT:
        for i in range(s.shape[0]):
            s[i] &= x[i] < _at(y, i)
    else:
        for i in range(s.shape[0]):
            s[i] &= x[i] <= _at(y, i)


@njit(cache=True, nogil=True)
def _signals_nb(features, left, right, ops, consts, first, count, start, end, sig):
    """sig[i] = 1 where rules [first, first + count) all hold at bar i's close, for i in [start, end)."""
    sig[start:end] = 1 if count > 0 else 0
    for k in range(first, first + count):
        if right[k] < 0:
            _and_rule_nb(features[left[k]], consts[k], ops[k], start, end, sig)
        else:
            _and_rule_nb(features[left[k]], features[right[k]], ops[k], start, end, sig)


@njit(cache=True, nogil=True, inline="always")
def _open_position(open_price, d, slip, size, cash, fee, stop_loss, take_profit):
    """(fill, units, entry fee, stop level, target level) of a position opened at ``open_price``: one definition of
    the arithmetic for both kernels, so their metrics stay equal bit for bit. A level that is off is -d * inf
    (stop) or d * inf (target): never touched."""
    fill = open_price * (1.0 + d * slip)
    units = size * cash / (fill * (1.0 + fee))
    stop_level = fill * (1.0 - d * stop_loss) if stop_loss > 0.0 else -d * np.inf
    target_level = fill * (1.0 + d * take_profit) if take_profit > 0.0 else d * np.inf
    return fill, units, units * fill * fee, stop_level, target_level


@njit(cache=True, nogil=True, inline="always")
def _extreme(extreme, price, d):
    """The best price of a position so far after ``price``: the highest long (d > 0), the lowest short."""
    return max(extreme, price) if d > 0 else min(extreme, price)


@njit(cache=True, nogil=True, inline="always")
def _effective_stop(stop_level, extreme, trail, d):
    """(stop, is_trailing): the tighter of the fixed stop and the trailing level below/above ``extreme``.

    With no fixed stop ``stop_level`` is -d * inf, so any trailing level is the tighter one.
    """
    if trail > 0.0:
        trailing = extreme * (1.0 - d * trail)
        if d * (trailing - stop_level) > 0.0:
            return trailing, True
    return stop_level, False


@njit(cache=True, nogil=True, inline="always")
def _write_metrics(out, start, end, cash, cash0, periods_per_year, n_trades, wins, gross_profit, gross_loss, max_dd,
                   exposure, sum_r, sum_r2, sum_down2, trade_mean, trade_m2):
    """The metrics row from a backtest's running sums: the one definition both kernels (this one and
    ``engine.kernel_batch``) write their metrics with, so they stay equal bit for bit."""
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
    out[M_AVG_TRADE_RETURN] = trade_mean
    trade_std = np.sqrt(trade_m2 / (n_trades - 1)) if n_trades > 1 else 0.0
    if trade_std > EQUAL_RETURNS_TOLERANCE * abs(trade_mean):
        out[M_TRADE_T_STAT] = trade_mean / trade_std * np.sqrt(n_trades)
    else:
        out[M_TRADE_T_STAT] = 0.0
    squares = trade_m2 + n_trades * trade_mean * trade_mean  # sum of squared returns
    out[M_TRADE_Z] = n_trades * trade_mean / np.sqrt(squares) if squares > 0.0 else 0.0
    out[M_BAR_Z] = sum_r / np.sqrt(sum_r2) if sum_r2 > 0.0 else 0.0


@njit(cache=True, nogil=True)
def _simulate_nb(genome, features, lookup, start, end, fee, slip, cash0, periods_per_year,
                 entry_sig, exit_sig, out, record, trades, equity):
    """Backtest one genome over bars [start, end); write metrics into ``out``.

    With ``record`` the trade list goes to ``trades`` and the close-marked equity to
    ``equity[start:end]``; returns the number of trades. ``entry_sig``/``exit_sig`` are uint8 work
    arrays of n_bars.

    Rule signals are computed first, rule by rule, in vectorised passes. Then, while flat, equity is
    constant and each bar's return is exactly 0, so the loop skips straight to the next entry signal;
    in a position every bar is simulated. Per-trade returns (pnl / cash the trade was sized from) are
    summarised with Welford's running mean and sum of squared deviations: stable when the returns are
    nearly equal, where sum and sum of squares would cancel to noise.
    """
    left = np.zeros(_MAX_RULES, np.int64)
    right = np.zeros(_MAX_RULES, np.int64)
    ops = np.zeros(_MAX_RULES, np.int64)
    consts = np.zeros(_MAX_RULES)
    if not _decode_rules_nb(genome, lookup, left, right, ops, consts):
        out[:] = np.nan
        return 0
    _signals_nb(features, left, right, ops, consts, 0, int(genome[N_ENTRY]), start, end, entry_sig)
    _signals_nb(features, left, right, ops, consts, MAX_ENTRY_RULES, int(genome[N_EXIT]), start, end, exit_sig)
    d = genome[DIRECTION]
    size = genome[SIZE] * genome[LEVERAGE]
    stop_loss = genome[STOP_LOSS]
    take_profit = genome[TAKE_PROFIT]
    trail = genome[TRAILING_STOP]
    opens = features[lookup[OPEN, 0]]
    highs = features[lookup[HIGH, 0]]
    lows = features[lookup[LOW, 0]]
    closes = features[lookup[CLOSE, 0]]
    last = end - 1  # decisions are taken at closes of bars < last; the last close only settles
    entry_sig[last] = 0
    entry_words = entry_sig.view(np.uint64)
    exit_sig[last] = 0
    adverse = lows if d > 0 else highs  # the side of the bar a stop is hit on
    favourable = highs if d > 0 else lows

    cash = cash0
    units = fill = entry_fee = stop_level = target_level = extreme = 0.0
    entry_bar = 0
    n_trades = wins = exposure = 0
    gross_profit = gross_loss = 0.0
    peak = cash0
    max_dd = 0.0
    prev_equity = cash0
    sum_r = sum_r2 = sum_down2 = 0.0
    trade_mean = trade_m2 = 0.0

    flat_from = start  # flat, deciding from this bar's close on
    while flat_from < last:
        # ---- flat: jump to the next entry signal ---------------------------------------------------
        # skip runs of zeros eight bars at a time (entry_sig's length is a multiple of 8)
        next_entry = flat_from
        while next_entry % 8 and entry_sig[next_entry] == 0 and next_entry < last:
            next_entry += 1
        while next_entry + 8 <= last and entry_words[next_entry // 8] == 0:
            next_entry += 8
        while entry_sig[next_entry] == 0 and next_entry < last:
            next_entry += 1
        if record:
            equity[flat_from:min(next_entry + 1, end)] = cash
        if next_entry >= last:
            break
        # ---- in a position from the next bar's open ----------------------------------------------
        i = next_entry + 1
        fill, units, entry_fee, stop_level, target_level = _open_position(opens[i], d, slip, size, cash, fee,
                                                                          stop_loss, take_profit)
        extreme = fill
        stop, trailing_active = _effective_stop(stop_level, extreme, trail, d)
        entry_bar = i
        exit_at_open = False
        while True:
            # d * (price - level) <= 0 means "at or beyond the stop" for both directions; a bar's open
            # lies within [low, high], so a quiet bar needs only the two extremes checked.
            exiting = exit_at_open
            if exiting:
                exit_price = opens[i]
                reason = EXIT_SIGNAL
            elif d * (adverse[i] - stop) > 0.0 and d * (favourable[i] - target_level) < 0.0 and i < last:
                extreme = _extreme(extreme, favourable[i], d)
                if trail > 0.0:
                    stop, trailing_active = _effective_stop(stop_level, extreme, trail, d)
            else:
                exiting = True
                reason = EXIT_TRAILING if trailing_active else EXIT_STOP
                if d * (opens[i] - stop) <= 0.0:
                    exit_price = opens[i]
                elif d * (adverse[i] - stop) <= 0.0:
                    exit_price = stop
                elif d * (opens[i] - target_level) >= 0.0:
                    exit_price = opens[i]
                    reason = EXIT_TARGET
                elif d * (favourable[i] - target_level) >= 0.0:
                    exit_price = target_level
                    reason = EXIT_TARGET
                else:
                    exit_price = closes[i]
                    reason = EXIT_END
            if exiting:
                price = exit_price * (1.0 - d * slip)
                pnl = d * units * (price - fill) - entry_fee - units * price * fee
                trade_return = pnl / cash  # cash is unchanged since the entry was sized from it
                cash = max(cash + pnl, 0.0)  # a loss beyond the account (leverage, no stop) leaves it at 0: ruined
                if pnl > 0.0:
                    wins += 1
                    gross_profit += pnl
                else:
                    gross_loss -= pnl
                if record:
                    row = trades[n_trades]
                    row[T_ENTRY_BAR] = entry_bar
                    row[T_EXIT_BAR] = i
                    row[T_ENTRY_PRICE] = fill
                    row[T_EXIT_PRICE] = price
                    row[T_UNITS] = units
                    row[T_PNL] = pnl
                    row[T_EXIT_REASON] = reason
                n_trades += 1
                delta = trade_return - trade_mean
                trade_mean += delta / n_trades
                trade_m2 += delta * (trade_return - trade_mean)  # >= 0: no clamp needed
                exposure += i - entry_bar + 1
                value = cash
            else:
                value = cash + d * units * (closes[i] - fill) - entry_fee
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
            if exiting:
                break
            exit_at_open = exit_sig[i] != 0
            i += 1
        if cash <= 0.0:  # ruined: no cash left to trade with
            cash = 0.0
            prev_equity = 0.0
            if record:
                equity[i + 1:end] = 0.0
            break
        flat_from = i

    _write_metrics(out, start, end, cash, cash0, periods_per_year, n_trades, wins, gross_profit, gross_loss, max_dd,
                   exposure, sum_r, sum_r2, sum_down2, trade_mean, trade_m2)
    return n_trades


@njit(cache=True, nogil=True)
def _signal_buffer(n_bars):
    """A uint8 work array for one signal per bar, padded to a multiple of 8 for word-wise scans."""
    return np.zeros((n_bars + 7) // 8 * 8, np.uint8)


@njit(cache=True, nogil=True)
def backtest_detail_nb(genome, features, lookup, start, end, fee, slip, cash0, periods_per_year):
    """(metrics, trades (k, N_TRADE_COLUMNS), equity over [start, end)) for one genome."""
    out = np.empty(N_METRICS)
    trades = np.empty((max(end - start, 1), N_TRADE_COLUMNS))
    equity = np.zeros(features.shape[1])
    k = _simulate_nb(genome, features, lookup, start, end, fee, slip, cash0, periods_per_year,
                     _signal_buffer(features.shape[1]), _signal_buffer(features.shape[1]),
                     out, True, trades, equity)
    return out, trades[:k].copy(), equity[start:end].copy()
