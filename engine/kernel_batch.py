"""The batch backtest kernel: a batch of encoded genomes over one or more windows, rules shared as bitsets.

Array contract (as ``engine.kernel``):
- ``genomes``: float64 (n_genomes, GENOME_WIDTH), rows laid out as in ``engine.layout``.
- ``features``: C-contiguous float64 (n_rows, n_bars); rows 0..4 are open, high, low, close, volume, the
  others indicator series, NaN during warm-up. ``lookup``: int64 (N_KINDS, MAX_PERIOD + 1) -> row, -1 if absent.
- ``starts``/``ends``: int64 (n_windows,), each window the bars [start, end) to trade; windows may overlap.
- Out: float64 (n_genomes, n_windows, N_METRICS); a genome referring to a row never computed gets NaN rows.

Structure (the semantics are docs/backtest.md's, and every metric equals the per-genome kernel
``engine.kernel.backtest_detail_nb`` bit for bit):
1. The batch's distinct rules (left row, right row or constant, operator) are found once; each is evaluated
   once over the union of the windows into a packed bitset (bit i & 63 of word i >> 6 is bar i), eight bars
   per vector comparison (``engine.kernel_rules``).
2. Per genome, its entry (exit) signal is the word-wise AND of its entry (exit) rules' bitsets.
3. While flat, the simulation jumps to the next entry bit (count trailing zeros). In a position it scans for
   the first bar that touches a stop or target, eight bars per step, bounded by the next exit bit of the
   current word; then it accounts the bars held: their close-marked values and returns (vectorised passes for
   a long hold), then the peak, drawdown and sums in bar order. Flat bars return exactly 0, so skipping them
   changes nothing, and every sum is accumulated in bar order, so the results are those of a bar loop.
Each genome reads only the shared, read-only bitsets and its own work arrays: its metrics are the same alone
as in any batch. Functions compile with ``error_model="numpy"`` (no zero-division check, which would keep
loops from vectorising); every division they make has a non-zero divisor or is guarded, as in the
per-genome kernel, so no result changes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernel import _effective_stop, _write_metrics
from engine.kernel_rules import _combine_nb, _cttz, _gt8, _lt8, _next_bit, rule_bitsets_nb, rule_table_nb
from engine.layout import (
    CLOSE,
    DIRECTION,
    HIGH,
    LEVERAGE,
    LOW,
    MAX_ENTRY_RULES,
    MAX_EXIT_RULES,
    N_ENTRY,
    N_EXIT,
    N_METRICS,
    OPEN,
    SIZE,
    STOP_LOSS,
    TAKE_PROFIT,
    TRAILING_STOP,
)

_SHORT_HOLD = 24  # (>= 1) a hold of fewer bars is accounted in one scalar loop, a longer one in vectorised passes
_BITS_BUDGET = 1 << 26  # bytes of rule bitsets per chunk of genomes (64 MiB: 1,800 genomes on 47,000 bars)


# ---- simulation ------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _quiet(adverse, favourable, i, stop, target, d):
    """Bar i neither touches the stop nor the target (d * (price - level) <= 0 is at or beyond a level)."""
    return (d * (adverse[i] - stop) > 0.0) & (d * (favourable[i] - target) < 0.0)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _account(value, r, peak, max_dd, sum_r, sum_r2, sum_down2):
    """One bar's close-marked ``value`` and return ``r`` into the running peak, drawdown and sums."""
    if value > peak:
        peak = value
    elif value < peak * (1.0 - max_dd):
        max_dd = 1.0 - value / peak
    down = min(r, 0.0)
    return peak, max_dd, sum_r + r, sum_r2 + r * r, sum_down2 + down * down


@njit(cache=True, nogil=True, error_model="numpy")
def _simulate_bits_nb(genome, opens, highs, lows, closes, entry_words, exit_words, w0, start, end, fee, slip,
                      cash0, periods_per_year, values, rets, out):
    """One genome over bars [start, end) from its entry/exit bitsets; metrics into ``out``.

    The arithmetic of every value is ``engine.kernel._simulate_nb``'s, in the same order.
    """
    d = genome[DIRECTION]
    size = genome[SIZE] * genome[LEVERAGE]
    stop_loss = genome[STOP_LOSS]
    take_profit = genome[TAKE_PROFIT]
    trail = genome[TRAILING_STOP]
    last = end - 1
    adverse = lows if d > 0 else highs
    favourable = highs if d > 0 else lows

    cash = cash0
    n_trades = wins = exposure = 0
    gross_profit = gross_loss = 0.0
    peak = cash0
    max_dd = 0.0
    prev_equity = cash0
    sum_r = sum_r2 = sum_down2 = 0.0
    trade_mean = trade_m2 = 0.0

    flat_from = start
    while flat_from < last:
        signal = _next_bit(entry_words, w0, flat_from, last)
        if signal >= last:
            break
        i = signal + 1
        fill = opens[i] * (1.0 + d * slip)
        units = size * cash / (fill * (1.0 + fee))
        entry_fee = units * fill * fee
        stop_level = fill * (1.0 - d * stop_loss) if stop_loss > 0.0 else -d * np.inf
        target_level = fill * (1.0 + d * take_profit) if take_profit > 0.0 else d * np.inf
        extreme = fill
        stop, _ = _effective_stop(stop_level, extreme, trail, d)
        entry_bar = i
        # levels are checked bar by bar, one word of exit bits at a time: an exit signal at close x fills at
        # the open of x + 1, where no level is checked
        signalled = False
        while True:
            word_end = min((i | 63) + 1, last)
            exit_signal = _next_bit(exit_words, w0, i, word_end)
            limit = exit_signal + 1 if exit_signal < word_end else word_end
            if trail > 0.0:
                # the stop is a function of the extreme, recomputed when the extreme moves. Eight bars at a
                # time while they are quiet even for the tightest stop they could see (the stop moves one way
                # only), else bar by bar through those eight
                while i < limit:
                    if i + 8 <= limit:
                        best = extreme
                        for k in range(i, i + 7):
                            best = max(best, favourable[k]) if d > 0 else min(best, favourable[k])
                        tightest, _ = _effective_stop(stop_level, best, trail, d)
                        if d > 0:
                            quiet = _gt8(lows, i, tightest, 0) & _lt8(highs, i, target_level, 0)
                        else:
                            quiet = _lt8(highs, i, tightest, 0) & _gt8(lows, i, target_level, 0)
                        if quiet == 0xFF:
                            moved = max(best, favourable[i + 7]) if d > 0 else min(best, favourable[i + 7])
                            if moved != extreme:
                                extreme = moved
                                stop, _ = _effective_stop(stop_level, extreme, trail, d)
                            i += 8
                            continue
                    block_end = min(i + 8, limit)
                    while i < block_end and _quiet(adverse, favourable, i, stop, target_level, d):
                        moved = max(extreme, favourable[i]) if d > 0 else min(extreme, favourable[i])
                        if moved != extreme:
                            extreme = moved
                            stop, _ = _effective_stop(stop_level, extreme, trail, d)
                        i += 1
                    if i < block_end:
                        break
            else:
                # eight bars per step: for a long, quiet is low > stop and high < target (d * (x - level) > 0
                # is x > level for d = 1, x < level for d = -1, exactly, infinite levels included)
                while i + 8 <= limit:
                    if d > 0:
                        quiet = _gt8(lows, i, stop, 0) & _lt8(highs, i, target_level, 0)
                    else:
                        quiet = _lt8(highs, i, stop, 0) & _gt8(lows, i, target_level, 0)
                    if quiet != 0xFF:
                        i += np.int64(_cttz(~quiet))
                        break
                    i += 8
                while i < limit and _quiet(adverse, favourable, i, stop, target_level, d):
                    i += 1
            if i < limit:  # a level was touched at bar i
                break
            if exit_signal < word_end:
                signalled = True
                break
            if i == last:
                break
        if signalled or d * (opens[i] - stop) <= 0.0:  # an exit signal, or the bar opens beyond the stop
            exit_price = opens[i]
        elif d * (adverse[i] - stop) <= 0.0:
            exit_price = stop
        elif d * (opens[i] - target_level) >= 0.0:
            exit_price = opens[i]
        elif d * (favourable[i] - target_level) >= 0.0:
            exit_price = target_level
        else:
            exit_price = closes[i]
        # statistics of the bars held through their close, in bar order; a long hold computes values and
        # returns in vectorised passes first
        held = i - entry_bar
        du = d * units
        if held < _SHORT_HOLD:
            for k in range(entry_bar, i):
                value = cash + du * (closes[k] - fill) - entry_fee
                r = value / prev_equity - 1.0 if prev_equity > 0.0 else 0.0
                peak, max_dd, sum_r, sum_r2, sum_down2 = _account(value, r, peak, max_dd, sum_r, sum_r2, sum_down2)
                prev_equity = value
        else:
            c = closes[entry_bar:i]
            v = values[:held]
            for k in range(held):
                v[k] = cash + du * (c[k] - fill) - entry_fee
            rets[0] = v[0] / prev_equity - 1.0 if prev_equity > 0.0 else 0.0
            ret = rets[1:held]
            now = v[1:]
            before = v[:held - 1]
            for k in range(held - 1):
                ret[k] = now[k] / before[k] - 1.0 if before[k] > 0.0 else 0.0
            for k in range(held):
                peak, max_dd, sum_r, sum_r2, sum_down2 = _account(v[k], rets[k], peak, max_dd, sum_r, sum_r2,
                                                                  sum_down2)
            prev_equity = v[held - 1]
        price = exit_price * (1.0 - d * slip)
        pnl = d * units * (price - fill) - entry_fee - units * price * fee
        trade_return = pnl / cash
        cash = max(cash + pnl, 0.0)  # a loss beyond the account (leverage, no stop) leaves it at 0: ruined
        if pnl > 0.0:
            wins += 1
            gross_profit += pnl
        else:
            gross_loss -= pnl
        n_trades += 1
        delta = trade_return - trade_mean
        trade_mean += delta / n_trades
        trade_m2 += delta * (trade_return - trade_mean)
        exposure += i - entry_bar + 1
        r = cash / prev_equity - 1.0 if prev_equity > 0.0 else 0.0
        peak, max_dd, sum_r, sum_r2, sum_down2 = _account(cash, r, peak, max_dd, sum_r, sum_r2, sum_down2)
        prev_equity = cash
        if cash <= 0.0:  # ruined
            cash = 0.0
            prev_equity = 0.0
            break
        flat_from = i

    _write_metrics(out, start, end, cash, cash0, periods_per_year, n_trades, wins, gross_profit, gross_loss, max_dd,
                   exposure, sum_r, sum_r2, sum_down2, trade_mean, trade_m2)


@njit(cache=True, nogil=True, error_model="numpy")
def backtest_windows_nb(genomes, features, lookup, starts, ends, fee, slip, cash0, periods_per_year):
    """Metrics (n_genomes, n_windows, N_METRICS) of a batch over each window [starts[w], ends[w]).

    Genomes go through in chunks whose rule bitsets fit in ``_BITS_BUDGET`` bytes (every genome alike, whatever
    its chunk: its metrics do not depend on the others).
    """
    n = genomes.shape[0]
    out = np.empty((n, starts.shape[0], N_METRICS))
    if n == 0 or starts.shape[0] == 0:
        return out
    lo = starts.min()
    hi = max(ends.max(), lo + 1)
    words = (hi - 1) // 64 + 1 - lo // 64
    chunk = max(1, _BITS_BUDGET // (8 * words * (MAX_ENTRY_RULES + MAX_EXIT_RULES)))
    for first in range(0, n, chunk):
        _windows_nb(genomes[first:first + chunk], features, lookup, starts, ends, lo, hi, fee, slip, cash0,
                    periods_per_year, out[first:first + chunk])
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _windows_nb(genomes, features, lookup, starts, ends, lo, hi, fee, slip, cash0, periods_per_year, out):
    """``backtest_windows_nb`` for one chunk of genomes, the windows inside bars [lo, hi)."""
    index, ok, left, right, ops, consts = rule_table_nb(genomes, lookup)
    w0 = lo // 64
    w1 = (hi - 1) // 64 + 1
    bits = rule_bitsets_nb(features, left, right, ops, consts, w0, w1)
    entry_words = np.zeros(w1 - w0, np.uint64)
    exit_words = np.zeros(w1 - w0, np.uint64)
    values = np.empty(hi - lo)
    rets = np.empty(hi - lo)
    opens = features[lookup[OPEN, 0]]
    highs = features[lookup[HIGH, 0]]
    lows = features[lookup[LOW, 0]]
    closes = features[lookup[CLOSE, 0]]
    for g in range(genomes.shape[0]):
        if not ok[g]:
            out[g] = np.nan
            continue
        _combine_nb(bits, index[g], 0, int(genomes[g, N_ENTRY]), entry_words)
        _combine_nb(bits, index[g], MAX_ENTRY_RULES, int(genomes[g, N_EXIT]), exit_words)
        for w in range(starts.shape[0]):
            _simulate_bits_nb(genomes[g], opens, highs, lows, closes, entry_words, exit_words, w0, starts[w],
                              ends[w], fee, slip, cash0, periods_per_year, values, rets, out[g, w])


@njit(cache=True, nogil=True, error_model="numpy")
def backtest_batch_nb(genomes, features, lookup, start, end, fee, slip, cash0, periods_per_year):
    """Metrics (n_genomes, N_METRICS) for a batch of genomes over bars [start, end)."""
    starts = np.full(1, start, np.int64)
    ends = np.full(1, end, np.int64)
    return backtest_windows_nb(genomes, features, lookup, starts, ends, fee, slip, cash0, periods_per_year)[:, 0]
