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
   the first bar that touches a stop or target, eight bars per step, up to the next exit bit (found once per
   exit signal, not once per trade). It writes the close-marked equity of each bar held (the exit bar's is
   the cash after the trade) to a stream and keeps the trade statistics.
4. The per-bar statistics (peak, drawdown, the sums of returns) are a chain of dependent additions in bar order
   per backtest, so sixteen backtests' streams are accounted side by side, one lane each of a <16 x double> vector
   per step (``_account_lanes``): each lane's operations are the scalar loop's, on the same operands, in the
   same order. Flat bars return exactly 0 and change no statistic, so they are not in the streams.
Each backtest reads only the shared, read-only bitsets and its own lane of the work arrays (vector operations
are exact lane by lane): its metrics are the same alone as in any batch, in any lane. Functions compile with
``error_model="numpy"`` (no zero-division check, which would keep loops from vectorising); every division they
make has a non-zero divisor or is guarded, as in the per-genome kernel, so no result changes.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from engine.kernel import _effective_stop, _extreme, _open_position, _write_metrics
from engine.kernel_rules import (
    _combine_nb,
    _cttz,
    _gt8,
    _load8,
    _lt8,
    _next_bit,
    rule_bitsets_nb,
    rule_table_nb,
)
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

_LANES = 16  # backtests accounted side by side, one per lane of a <16 x double> vector (two AVX-512 registers)
_BITS_BUDGET = 1 << 26  # bytes of rule bitsets per chunk of genomes (64 MiB: 1,800 genomes on 47,000 bars)


# ---- simulation ------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _quiet(adverse, favourable, i, stop, target, d):
    """Bar i neither touches the stop nor the target (d * (price - level) <= 0 is at or beyond a level)."""
    return (d * (adverse[i] - stop) > 0.0) & (d * (favourable[i] - target) < 0.0)


def _trailing_block(long):
    """An intrinsic (favourable, adverse, i, extreme, stop_level, factor, target) -> (quiet, block extreme) for the
    eight bars i..i + 7 of a position with a trailing stop, long (``long``) or short.

    Bit k of ``quiet`` says bar i + k touches neither its stop nor the target, its stop being exactly the one the
    bar-by-bar loop holds there: ``_effective_stop`` of the extreme through bar i + k - 1 (``factor`` is that
    function's ``1 - d * trail``). The block extreme is the best favourable price of the eight bars. Each lane makes
    the scalar loop's product on the same operands and the same tests (``d * (x - y) > 0`` as ``x > y``, or ``x < y``
    short: the same answer for any two prices); the extremes are a running maximum (minimum) across the lanes, exact
    in any order (prices are never NaN). No bounds check: the caller keeps i + 8 within the arrays."""
    worst = -np.inf if long else np.inf

    @intrinsic
    def trailing_block(typingctx, favourable, adverse, i, extreme, stop_level, factor, target):
        sig = types.Tuple((types.uint64, types.float64))(favourable, adverse, types.int64, types.float64,
                                                         types.float64, types.float64, types.float64)

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(ir.DoubleType(), 8)
            i32 = ir.IntType(32)

            def splat(x):
                return _load8(context, builder, types.float64, x, None)

            def best(a, b):  # max (long) or min (short): the scalar loop's max(a, b) / min(a, b)
                return builder.select(builder.fcmp_ordered(">" if long else "<", b, a), b, a)

            def shifted(x, by):  # lane k holds x's lane k - by, the first ``by`` lanes the worst price
                fill = ir.Constant(vec, [worst] * 8)
                return builder.shuffle_vector(fill, x, ir.Constant(ir.VectorType(i32, 8),
                                                                   [k if k < by else 8 + k - by for k in range(8)]))

            fav = _load8(context, builder, signature.args[0], args[0], args[2])
            adv = _load8(context, builder, signature.args[1], args[1], args[2])
            through = fav  # lane k: the best of bars i..i + k
            for by in (1, 2, 4):
                through = best(through, shifted(through, by))
            before = best(splat(args[3]), shifted(through, 1))  # lane k: the extreme through bar i + k - 1
            # d * (x - y) > 0, with d = +1 (long) or -1 (short), is x > y (x < y): a difference of prices is 0 only
            # when they are equal, and negating it is exact
            above, below = (">", "<") if long else ("<", ">")
            level = splat(args[4])
            trailing = builder.fmul(before, splat(args[5]))  # the stop: the trailing level if it is the tighter
            stop = builder.select(builder.fcmp_ordered(above, trailing, level), trailing, level)
            quiet = builder.and_(builder.fcmp_ordered(above, adv, stop),  # as ``_quiet``
                                 builder.fcmp_ordered(below, fav, splat(args[6])))
            bits = builder.zext(builder.bitcast(quiet, ir.IntType(8)), ir.IntType(64))
            top = builder.extract_element(through, ir.Constant(i32, 7))
            return context.make_tuple(builder, signature.return_type, [bits, top])

        return sig, codegen

    return trailing_block


_trailing_long, _trailing_short = _trailing_block(True), _trailing_block(False)


@intrinsic
def _mark8(typingctx, closes, i, stream, j, cash, du, fill, entry_fee):
    """stream[j + q] = cash + du * (closes[i + q] - fill) - entry_fee for q < 8, as one vector (each lane the scalar
    expression's operations): the close-marked equity of eight bars held. No bounds check: the caller keeps i + 8
    and j + 8 within the arrays."""
    sig = types.void(closes, types.int64, stream, types.int64, types.float64, types.float64, types.float64,
                     types.float64)

    def codegen(context, builder, signature, args):
        c = _load8(context, builder, signature.args[0], args[0], args[1])
        cash, du, fill, fee = (_load8(context, builder, types.float64, x, None) for x in args[4:8])
        value = builder.fsub(builder.fadd(cash, builder.fmul(du, builder.fsub(c, fill))), fee)
        dst = context.make_array(signature.args[2])(context, builder, args[2]).data
        builder.store(value, builder.bitcast(builder.gep(dst, [args[3]]), value.type.as_pointer()), align=8)
        return context.get_dummy_value()

    return sig, codegen


# a backtest's trade statistics (``tally``), from its trades
_T_CASH, _T_TRADES, _T_WINS, _T_GROSS_PROFIT, _T_GROSS_LOSS, _T_EXPOSURE, _T_MEAN, _T_M2 = range(8)
_N_TALLY = 8
# the running statistics of a backtest's equity stream (``state[row, lane]``)
_S_PREV, _S_PEAK, _S_MAX_DD, _S_SUM_R, _S_SUM_R2, _S_SUM_DOWN2 = range(6)
_N_STATE = 6


@intrinsic
def _account_lanes(typingctx, streams, offset, steps, state):
    """For each lane l, account the ``steps`` equity values ``streams.flat[offset[l]:offset[l] + steps]`` into the
    running statistics ``state[:, l]``, all lanes in one <_LANES x double> vector per step.

    Each lane computes exactly what the per-genome kernel's bar loop does (the same IEEE operations on the same
    operands in the same order, a branch replaced by a select), so its results are those of a scalar loop bit for
    bit. The drawdown test's threshold ``peak * (1 - max_dd)`` is carried from step to step and recomputed, with
    the same operations, only where the peak or the drawdown moved: the loop's longest dependency chain is then
    a comparison and two selects, not a subtraction, a product and a comparison. The drawdown's division is made
    in every step and kept where a lane deepened: at sixteen lanes some lane deepens in so many steps that a
    branch around it cost more than it saved (measured: 0.93x). No bounds check: the caller keeps every lane's
    values within ``streams``.
    """

    def c_array(t, dtype, ndim):
        return isinstance(t, types.Array) and t.dtype == dtype and t.ndim == ndim and t.layout == "C"

    if not (c_array(streams, types.float64, 2) and c_array(offset, types.int64, 1)
            and isinstance(steps, types.Integer) and c_array(state, types.float64, 2)):
        return None  # the code reads raw contiguous memory: any other type is a typing error, not a miscompile
    sig = types.void(streams, offset, steps, state)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        vec = ir.VectorType(ir.DoubleType(), _LANES)
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        offsets = context.make_array(signature.args[1])(context, builder, args[1]).data
        rows = context.make_array(signature.args[3])(context, builder, args[3]).data
        n = args[2]
        zero = ir.Constant(vec, [0.0] * _LANES)
        one = ir.Constant(vec, [1.0] * _LANES)
        true = ir.Constant(ir.VectorType(ir.IntType(1), _LANES), [1] * _LANES)

        def row(r):
            return builder.bitcast(builder.gep(rows, [ir.Constant(i64, r * _LANES)]), vec.as_pointer())

        initial = [builder.load(row(r), align=8) for r in range(_N_STATE)]
        omd0 = builder.fsub(one, initial[_S_MAX_DD])
        thr0 = builder.fmul(initial[_S_PEAK], omd0)
        lanes = [builder.gep(data, [builder.load(builder.gep(offsets, [ir.Constant(i64, k)]))])
                 for k in range(_LANES)]
        before = builder.block
        head = builder.append_basic_block("lanes.head")
        body = builder.append_basic_block("lanes.body")
        done = builder.append_basic_block("lanes.done")
        builder.branch(head)

        builder.position_at_end(head)
        step = builder.phi(i64)
        step.add_incoming(ir.Constant(i64, 0), before)
        phis = []
        for r in range(_N_STATE):
            phi = builder.phi(vec)
            phi.add_incoming(initial[r], before)
            phis.append(phi)
        omd = builder.phi(vec)
        omd.add_incoming(omd0, before)
        thr = builder.phi(vec)
        thr.add_incoming(thr0, before)
        builder.cbranch(builder.icmp_signed("<", step, n), body, done)

        builder.position_at_end(body)
        prev, peak, max_dd, sum_r, sum_r2, sum_down2 = phis
        value = ir.Constant(vec, ir.Undefined)
        for k in range(_LANES):
            value = builder.insert_element(value, builder.load(builder.gep(lanes[k], [step])), ir.Constant(i64, k))
        # r = value / prev - 1.0 if prev > 0.0 else 0.0
        r = builder.select(builder.fcmp_ordered(">", prev, zero), builder.fsub(builder.fdiv(value, prev), one), zero)
        # if value > peak: peak = value  elif value < peak * (1.0 - max_dd): max_dd = 1.0 - value / peak, where
        # thr == peak * (1 - max_dd), carried (the same product, recomputed only when peak or max_dd changes)
        higher = builder.fcmp_ordered(">", value, peak)
        deeper = builder.and_(builder.xor(higher, true), builder.fcmp_ordered("<", value, thr))
        q = builder.fsub(one, builder.fdiv(value, peak))
        omd_q = builder.fsub(one, q)
        new_thr = builder.select(deeper, builder.fmul(peak, omd_q),
                                 builder.select(higher, builder.fmul(value, omd), thr))
        # down = min(r, 0.0), as Numba's min: 0.0 if 0.0 < r else r
        down = builder.select(builder.fcmp_ordered("<", zero, r), zero, r)
        new = [value, builder.select(higher, value, peak), builder.select(deeper, q, max_dd), builder.fadd(sum_r, r),
               builder.fadd(sum_r2, builder.fmul(r, r)), builder.fadd(sum_down2, builder.fmul(down, down))]
        for phi, x in zip(phis, new, strict=True):
            phi.add_incoming(x, body)
        omd.add_incoming(builder.select(deeper, omd_q, omd), body)
        thr.add_incoming(new_thr, body)
        step.add_incoming(builder.add(step, ir.Constant(i64, 1)), body)
        builder.branch(head)

        builder.position_at_end(done)
        for r in range(_N_STATE):
            builder.store(phis[r], row(r), align=8)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _reset_lane(state, lane, cash0):
    """A new backtest in ``lane``: the equity before the window's first bar is the initial cash."""
    state[_S_PREV, lane] = cash0
    state[_S_PEAK, lane] = cash0
    state[_S_MAX_DD, lane] = 0.0
    state[_S_SUM_R, lane] = 0.0
    state[_S_SUM_R2, lane] = 0.0
    state[_S_SUM_DOWN2, lane] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def _finish(out, tally, state, lane, start, end, cash0, periods_per_year):
    """The metrics row of a backtest from its trade statistics and its lane's running statistics."""
    _write_metrics(out, start, end, tally[_T_CASH], cash0, periods_per_year, int(tally[_T_TRADES]),
                   int(tally[_T_WINS]), tally[_T_GROSS_PROFIT], tally[_T_GROSS_LOSS], state[_S_MAX_DD, lane],
                   int(tally[_T_EXPOSURE]), state[_S_SUM_R, lane], state[_S_SUM_R2, lane],
                   state[_S_SUM_DOWN2, lane], tally[_T_MEAN], tally[_T_M2])


@njit(cache=True, nogil=True, error_model="numpy")
def _trades_bits_nb(genome, opens, highs, lows, closes, entry_words, exit_words, w0, start, end, fee, slip, cash0,
                    stream, tally):
    """The trades of one genome over bars [start, end) from its entry/exit bitsets.

    Writes the close-marked equity of every bar in a position, in bar order (the exit bar's is the cash after the
    trade), to ``stream`` and returns how many; the trade statistics go to ``tally`` (``_T_*``). Flat bars are
    not in the stream: their equity equals the last value before them, so they return exactly 0.
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
    n_values = 0
    trade_mean = trade_m2 = 0.0

    exit_signal = -1  # the next exit signal found so far (-1: none yet)
    flat_from = start
    while flat_from < last:
        signal = _next_bit(entry_words, w0, flat_from, last)
        if signal >= last:
            break
        i = signal + 1
        fill, units, entry_fee, stop_level, target_level = _open_position(opens[i], d, slip, size, cash, fee,
                                                                          stop_loss, take_profit)
        extreme = fill
        stop, _ = _effective_stop(stop_level, extreme, trail, d)
        entry_bar = i
        # the next exit signal at or after i (found once per signal passed, not per trade: genomes without exit
        # rules scan their empty exit bitset once); an exit signal at close x fills at the open of x + 1, where
        # no level is checked, so levels are checked through bar x
        if exit_signal < i:
            exit_signal = _next_bit(exit_words, w0, i, last)
        limit = exit_signal + 1 if exit_signal < last else last
        # the close-marked equity of each bar held is written to the stream as the scan passes it (a separate loop
        # over the held bars would add a loop whose length is data); a block of eight is written whole: the values
        # of its bars from the exit bar on are overwritten by the exit's cash and later trades, or lie past the
        # stream's end, which is never read
        du = d * units
        if trail > 0.0:
            # the stop is a function of the extreme through the bar before: eight bars at a time, each against its
            # own stop, until the block in which the trade ends; then the stop of the bar reached, and the last bars
            # before the limit one by one, the stop recomputed in every bar (a branch on whether the extreme moved,
            # which is data, mispredicts)
            factor = 1.0 - d * trail
            ended = False
            while i + 8 <= limit:
                if d > 0:
                    quiet, top = _trailing_long(favourable, adverse, i, extreme, stop_level, factor, target_level)
                else:
                    quiet, top = _trailing_short(favourable, adverse, i, extreme, stop_level, factor, target_level)
                _mark8(closes, i, stream, n_values + i - entry_bar, cash, du, fill, entry_fee)
                if quiet != 0xFF:  # the first bar that is not quiet ends the trade
                    reached = i + np.int64(_cttz(~quiet))
                    for k in range(i, reached):
                        extreme = _extreme(extreme, favourable[k], d)
                    i, ended = reached, True
                    break
                extreme = _extreme(extreme, top, d)
                i += 8
            stop, _ = _effective_stop(stop_level, extreme, trail, d)
            while not ended and i < limit and _quiet(adverse, favourable, i, stop, target_level, d):
                extreme = _extreme(extreme, favourable[i], d)
                stop, _ = _effective_stop(stop_level, extreme, trail, d)
                stream[n_values + i - entry_bar] = cash + du * (closes[i] - fill) - entry_fee
                i += 1
        else:
            while i + 8 <= limit:
                if d > 0:
                    quiet = _gt8(lows, i, stop, 0) & _lt8(highs, i, target_level, 0)
                else:
                    quiet = _lt8(highs, i, stop, 0) & _gt8(lows, i, target_level, 0)
                _mark8(closes, i, stream, n_values + i - entry_bar, cash, du, fill, entry_fee)
                if quiet != 0xFF:
                    i += np.int64(_cttz(~quiet))
                    break
                i += 8
            while i < limit and _quiet(adverse, favourable, i, stop, target_level, d):
                stream[n_values + i - entry_bar] = cash + du * (closes[i] - fill) - entry_fee
                i += 1
        signalled = i == limit and exit_signal < last  # no level touched before the exit signal's fill
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
        n_values += i - entry_bar
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
        stream[n_values] = cash
        n_values += 1
        if cash <= 0.0:  # ruined: the stream ends with the 0
            cash = 0.0
            break
        flat_from = i

    tally[_T_CASH] = cash
    tally[_T_TRADES] = n_trades
    tally[_T_WINS] = wins
    tally[_T_GROSS_PROFIT] = gross_profit
    tally[_T_GROSS_LOSS] = gross_loss
    tally[_T_EXPOSURE] = exposure
    tally[_T_MEAN] = trade_mean
    tally[_T_M2] = trade_m2
    return n_values


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
    """``backtest_windows_nb`` for one chunk of genomes, the windows inside bars [lo, hi).

    The backtests (genome g, window w), g-major, go through ``_LANES`` lanes: a lane takes the next backtest, runs
    its trades (``_trades_bits_nb``, which streams its equity values), and an ``_account_lanes`` loop then accounts the
    lanes' streams side by side, one vector operation for all lanes, until one of them ends; that lane writes
    its metrics and takes the next backtest. When none is left, the idle lanes repeat a live lane's reads until
    the last stream ends (a vector step costs the same whatever the number of live lanes).
    """
    index, ok, left, right, ops, consts = rule_table_nb(genomes, lookup)
    w0 = lo // 64
    w1 = (hi - 1) // 64 + 1
    bits = rule_bitsets_nb(features, left, right, ops, consts, w0, w1)
    entry_words = np.zeros(w1 - w0, np.uint64)
    exit_words = np.zeros(w1 - w0, np.uint64)
    opens = features[lookup[OPEN, 0]]
    highs = features[lookup[HIGH, 0]]
    lows = features[lookup[LOW, 0]]
    closes = features[lookup[CLOSE, 0]]
    n_windows = starts.shape[0]
    capacity = max(hi - lo, 1)
    streams = np.empty((_LANES, capacity))  # a lane reads only values its trades wrote
    tallies = np.zeros((_LANES, _N_TALLY))
    state = np.zeros((_N_STATE, _LANES))
    job = np.zeros(_LANES, np.int64)  # the lane's backtest: g * n_windows + w
    length = np.zeros(_LANES, np.int64)
    offset = np.zeros(_LANES, np.int64)  # flat index into streams of the lane's next value
    combined = -1  # the genome whose signals are in entry_words / exit_words
    next_job = 0
    n_jobs = genomes.shape[0] * n_windows
    active = 0
    lane = 0
    while True:
        # fill the lanes that have no backtest (all of them at first)
        while lane < _LANES and next_job < n_jobs:
            g, w = next_job // n_windows, next_job % n_windows
            next_job += 1
            if not ok[g]:
                out[g, w] = np.nan
                continue
            if combined != g:
                _combine_nb(bits, index[g], 0, int(genomes[g, N_ENTRY]), entry_words)
                _combine_nb(bits, index[g], MAX_ENTRY_RULES, int(genomes[g, N_EXIT]), exit_words)
                combined = g
            n = _trades_bits_nb(genomes[g], opens, highs, lows, closes, entry_words, exit_words, w0, starts[w],
                                ends[w], fee, slip, cash0, streams[lane], tallies[lane])
            _reset_lane(state, lane, cash0)
            if n == 0:
                _finish(out[g, w], tallies[lane], state, lane, starts[w], ends[w], cash0, periods_per_year)
                continue
            job[lane] = g * n_windows + w
            length[lane] = n
            offset[lane] = lane * capacity
            active += 1
            lane += 1
            while lane < _LANES and length[lane] > 0:  # the next free lane
                lane += 1
        if active == 0:
            break
        # the steps until the first live lane's stream ends; once no backtest is left to start, idle lanes read a
        # live lane's values (their statistics are never read: a lane is reset when it takes a backtest)
        steps = capacity
        live = 0
        for k in range(_LANES):
            if length[k] > 0:
                steps = min(steps, length[k])
                live = k
        for k in range(_LANES):
            if length[k] == 0:
                offset[k] = offset[live]
        _account_lanes(streams, offset, steps, state)
        lane = _LANES
        for k in range(_LANES):
            if length[k] == 0:
                lane = min(lane, k)
                continue
            offset[k] += steps
            length[k] -= steps
            if length[k] == 0:
                g, w = job[k] // n_windows, job[k] % n_windows
                _finish(out[g, w], tallies[k], state, k, starts[w], ends[w], cash0, periods_per_year)
                active -= 1
                lane = min(lane, k)


@njit(cache=True, nogil=True, error_model="numpy")
def backtest_batch_nb(genomes, features, lookup, start, end, fee, slip, cash0, periods_per_year):
    """Metrics (n_genomes, N_METRICS) for a batch of genomes over bars [start, end)."""
    starts = np.full(1, start, np.int64)
    ends = np.full(1, end, np.int64)
    return backtest_windows_nb(genomes, features, lookup, starts, ends, fee, slip, cash0, periods_per_year)[:, 0]
