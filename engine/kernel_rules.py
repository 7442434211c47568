"""Rule bitsets for the batch kernel: a batch's distinct rules, each evaluated once into packed bits.

Array contract:
- ``genomes``: float64 (n_genomes, GENOME_WIDTH) as in ``engine.layout``; ``features``: C-contiguous float64
  (n_rows, n_bars), NaN during warm-up; ``lookup``: int64 (N_KINDS, MAX_PERIOD + 1) -> row, -1 if absent.
- A bitset is uint64 words over the word columns [w0, w1): bit i & 63 of column (i >> 6) - w0 is bar i; bits of
  bars beyond the data are 0.

A rule holds at bar i as docs/backtest.md says: NaN compares false; a cross also reads bar i - 1 and is never
true at the dataset's first bar. Comparisons run eight bars at a time as one vector compare whose lane mask
is the byte of bits (``_compare8``, an LLVM ``fcmp`` on <8 x double>), so a rule over 64 bars is eight
compares and no per-bar branch.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from engine.kernel import _at, _decode_rules_nb
from engine.layout import CROSSES_ABOVE, GE, GT, LE, LT, MAX_ENTRY_RULES, MAX_EXIT_RULES, N_ENTRY, N_EXIT

_MAX_RULES = MAX_ENTRY_RULES + MAX_EXIT_RULES
_BLOCK = 4096  # bars per block of the rule pass (a multiple of 64): operand rows stay in L1/L2 across rules
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


@intrinsic
def _cttz(typingctx, x):
    """Trailing zero bits of a uint64 (64 for 0)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


_VEC8 = ir.VectorType(ir.DoubleType(), 8)


def _load8(context, builder, ty, value, index):
    """Eight doubles from a contiguous array at ``index``, or a scalar broadcast to eight lanes."""
    if isinstance(ty, types.Array):
        data = context.make_array(ty)(context, builder, value).data
        return builder.load(builder.bitcast(builder.gep(data, [index]), _VEC8.as_pointer()), align=8)
    lanes = builder.insert_element(ir.Constant(_VEC8, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(lanes, ir.Constant(_VEC8, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))


def _compare8(predicate):
    """An intrinsic (a, i, b, j) -> uint64 whose bit k is ``a[i + k] predicate b[j + k]`` (b may be a scalar),
    k < 8: one vector comparison. Ordered, so NaN compares false. No bounds check: the caller keeps
    i, j >= 0 and i + 8, j + 8 within the arrays."""

    @intrinsic
    def compare8(typingctx, a, i, b, j):
        sig = types.uint64(a, types.int64, b, types.int64)

        def codegen(context, builder, signature, args):
            x = _load8(context, builder, signature.args[0], args[0], args[1])
            y = _load8(context, builder, signature.args[2], args[2], args[3])
            mask = builder.fcmp_ordered(predicate, x, y)
            return builder.zext(builder.bitcast(mask, ir.IntType(8)), ir.IntType(64))

        return sig, codegen

    return compare8


_gt8, _ge8, _lt8, _le8, _ord8 = (_compare8(p) for p in (">", ">=", "<", "<=", "ord"))


# ---- the batch's distinct rules --------------------------------------------------------------------------

@njit(cache=True, nogil=True, error_model="numpy")
def rule_table_nb(genomes, lookup):
    """(index (n, 6): distinct rule per slot or -1, ok (n,), left, right, ops, consts of the distinct rules).

    ``right`` is -1 for a constant; a rule comparing two rows has constant 0 so that equal rules share a slot.
    ``ok[g]`` is False when genome g refers to a row that was never computed.
    """
    n = genomes.shape[0]
    index = np.full((n, _MAX_RULES), -1, np.int64)
    ok = np.ones(n, np.bool_)
    left = np.empty(n * _MAX_RULES, np.int64)
    right = np.empty(n * _MAX_RULES, np.int64)
    ops = np.empty(n * _MAX_RULES, np.int64)
    consts = np.empty(n * _MAX_RULES)
    slots = 16  # an open-addressing hash table of distinct rule numbers, at most half full
    while slots < 2 * n * _MAX_RULES:
        slots *= 2
    table = np.full(slots, -1, np.int64)
    bits = np.empty(1)  # the constant's bit pattern, hashed
    g_left = np.zeros(_MAX_RULES, np.int64)
    g_right = np.zeros(_MAX_RULES, np.int64)
    g_ops = np.zeros(_MAX_RULES, np.int64)
    g_consts = np.zeros(_MAX_RULES)
    count = 0
    for g in range(n):
        if not _decode_rules_nb(genomes[g], lookup, g_left, g_right, g_ops, g_consts):
            ok[g] = False
            continue
        n_entry = int(genomes[g, N_ENTRY])
        n_exit = int(genomes[g, N_EXIT])
        for r in range(_MAX_RULES):
            used = r < n_entry if r < MAX_ENTRY_RULES else r - MAX_ENTRY_RULES < n_exit
            if not used:
                continue
            const = g_consts[r] + 0.0 if g_right[r] < 0 else 0.0  # + 0.0: -0.0 and 0.0 compare alike
            bits[0] = const
            h = (g_left[r] * 1_000_003 + g_right[r] * 10_007 + g_ops[r] * 101) ^ bits.view(np.int64)[0]
            h = (h ^ (h >> 29)) * 0x5851F42D4C957F2D
            slot = (h ^ (h >> 32)) & (slots - 1)
            while True:
                k = table[slot]
                if k < 0:  # a new rule (a NaN constant is never equal to another: its rule stays apart)
                    k = count
                    table[slot] = k
                    left[k], right[k], ops[k], consts[k] = g_left[r], g_right[r], g_ops[r], const
                    count += 1
                    break
                if left[k] == g_left[r] and right[k] == g_right[r] and ops[k] == g_ops[r] and consts[k] == const:
                    break
                slot = (slot + 1) & (slots - 1)
            index[g, r] = k
    return index, ok, left[:count], right[:count], ops[:count], consts[:count]


# ---- rule bitsets ----------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, error_model="numpy")
def _holds(x, y, xp, yp, op):
    """Rule ``op`` at a bar with operands x, y and, for a cross, the bar before's xp, yp. NaN compares false."""
    if op == GT:
        return x > y
    if op == GE:
        return x >= y
    if op == LT:
        return x < y
    if op == LE:
        return x <= y
    if op == CROSSES_ABOVE:
        return (x > y) & (xp <= yp)
    return (x < y) & (xp >= yp)


@njit(cache=True, nogil=True, error_model="numpy")
def _edge_word_nb(a, b, op, w):
    """Word w bar by bar: for the last, partial word of the data, and word 0 of a cross (never true at bar 0)."""
    word = np.uint64(0)
    for i in range(w * 64, min(w * 64 + 64, a.shape[0])):
        if op >= CROSSES_ABOVE and i == 0:
            continue
        j = max(i - 1, 0)
        if _holds(a[i], _at(b, i), a[j], _at(b, j), op):
            word |= np.uint64(1) << np.uint64(i & 63)
    return word


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _word(cmp8, a, b, base, shift):
    """The 64 comparisons of bars [base, base + 64) as a word; ``shift`` 1 reads the bars before them."""
    word = np.uint64(0)
    for q in range(8):
        word |= cmp8(a, base + 8 * q - shift, b, base + 8 * q - shift) << np.uint64(8 * q)
    return word


@njit(cache=True, nogil=True, error_model="numpy")
def _rule_words_nb(a, b, op, w_lo, w_hi, dst):
    """dst[w - w_lo] = rule ``op`` over the 64 bars of word w, for w in [w_lo, w_hi); b a series or a constant."""
    n_bars = a.shape[0]
    full_hi = max(min(w_hi, n_bars // 64), w_lo)  # words wholly inside the data
    first = w_lo
    if op >= CROSSES_ABOVE and w_lo == 0 and w_hi > 0:
        dst[0] = _edge_word_nb(a, b, op, 0)
        first = 1
    if op == GT:
        for w in range(first, full_hi):
            dst[w - w_lo] = _word(_gt8, a, b, w * 64, 0)
    elif op == GE:
        for w in range(first, full_hi):
            dst[w - w_lo] = _word(_ge8, a, b, w * 64, 0)
    elif op == LT:
        for w in range(first, full_hi):
            dst[w - w_lo] = _word(_lt8, a, b, w * 64, 0)
    elif op == LE:
        for w in range(first, full_hi):
            dst[w - w_lo] = _word(_le8, a, b, w * 64, 0)
    elif op == CROSSES_ABOVE:
        for w in range(first, full_hi):
            dst[w - w_lo] = _word(_gt8, a, b, w * 64, 0) & _word(_le8, a, b, w * 64, 1)
    else:
        for w in range(first, full_hi):
            dst[w - w_lo] = _word(_lt8, a, b, w * 64, 0) & _word(_ge8, a, b, w * 64, 1)
    for w in range(max(first, full_hi), w_hi):
        dst[w - w_lo] = _edge_word_nb(a, b, op, w) if w * 64 < n_bars else np.uint64(0)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _pair_words(a, b, base):
    """(a > b, a < b, neither NaN) over the 64 bars from ``base``, as words: every operator of a pair of rows
    follows from these three (``_pair_words_nb``)."""
    return _word(_gt8, a, b, base, 0), _word(_lt8, a, b, base, 0), _word(_ord8, a, b, base, 0)


@njit(cache=True, nogil=True, error_model="numpy")
def _pair_words_nb(a, b, members, ops, w_lo, w_hi, bits, w0):
    """The words [w_lo, w_hi) of several rules comparing the same two rows ``a`` and ``b``, each its operator:
    three comparisons of the rows per word for all of them, not one or two per rule, since a comparison of two
    rows costs its loads. a >= b is (neither NaN) and not a < b, exactly as the comparison; a cross at bar i reads
    bar i - 1's bit, the word before's last bit at bit 0 (none before the first bar)."""
    n_bars = a.shape[0]
    full_hi = max(min(w_hi, n_bars // 64), w_lo)  # words wholly inside the data
    le_before = ge_before = np.uint64(0)
    if 0 < w_lo < full_hi:
        gt, lt, ordered = _pair_words(a, b, (w_lo - 1) * 64)
        le_before, ge_before = ordered & ~gt, ordered & ~lt
    for w in range(w_lo, full_hi):
        gt, lt, ordered = _pair_words(a, b, w * 64)
        le, ge = ordered & ~gt, ordered & ~lt
        for k in members:
            op = ops[k]
            if op == GT:
                word = gt
            elif op == GE:
                word = ge
            elif op == LT:
                word = lt
            elif op == LE:
                word = le
            elif op == CROSSES_ABOVE:
                word = gt & ((le << np.uint64(1)) | (le_before >> np.uint64(63)))
            else:
                word = lt & ((ge << np.uint64(1)) | (ge_before >> np.uint64(63)))
            bits[k, w - w0] = word
        le_before, ge_before = le, ge
    for w in range(full_hi, w_hi):
        for k in members:
            bits[k, w - w0] = _edge_word_nb(a, b, ops[k], w) if w * 64 < n_bars else np.uint64(0)


@njit(cache=True, nogil=True, error_model="numpy")
def rule_bitsets_nb(features, left, right, ops, consts, w0, w1):
    """uint64 (n_rules, w1 - w0): bit i & 63 of column (i >> 6) - w0 is rule k at bar i, bars beyond the data 0.

    Blocks of ``_BLOCK`` bars, every rule per block: the operand rows a block needs stay in cache. Rules comparing
    the same two rows (``close > sma(20)``, ``close crosses_above sma(20)``) are evaluated together.
    """
    n_rules = left.shape[0]
    bits = np.zeros((n_rules, w1 - w0), np.uint64)
    order = np.argsort(left * (features.shape[0] + 1) + right)  # rules reading the same rows one after another
    # groups of rules in that order: rules comparing the same two rows together, every other rule alone
    bounds = np.empty(n_rules + 1, np.int64)
    n_groups = 0
    for j in range(n_rules):
        k, before = order[j], order[j - 1]
        if j == 0 or right[k] < 0 or left[k] != left[before] or right[k] != right[before]:
            bounds[n_groups] = j
            n_groups += 1
    bounds[n_groups] = n_rules
    step = _BLOCK // 64
    for b0 in range(w0, w1, step):
        b1 = min(b0 + step, w1)
        for g in range(n_groups):
            first, end = bounds[g], bounds[g + 1]
            k = order[first]
            if end - first > 1:
                _pair_words_nb(features[left[k]], features[right[k]], order[first:end], ops, b0, b1, bits, w0)
            elif right[k] < 0:
                _rule_words_nb(features[left[k]], consts[k], ops[k], b0, b1, bits[k, b0 - w0:b1 - w0])
            else:
                _rule_words_nb(features[left[k]], features[right[k]], ops[k], b0, b1, bits[k, b0 - w0:b1 - w0])
    return bits


@njit(cache=True, nogil=True, error_model="numpy")
def _combine_nb(bits, index, first, count, dst):
    """dst = AND of the bitsets of rules index[first:first + count]; all zero without rules."""
    if count == 0:
        dst[:] = 0
        return
    dst[:] = bits[index[first]]
    for r in range(first + 1, first + count):
        row = bits[index[r]]
        for j in range(dst.shape[0]):
            dst[j] &= row[j]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _next_bit(words, w0, i, limit):
    """The first bar j in [i, limit) whose bit is set, else ``limit``."""
    if i >= limit:
        return limit
    w = i >> 6
    x = words[w - w0] & (_ONES << np.uint64(i & 63))
    last_word = (limit - 1) >> 6
    while x == 0:
        w += 1
        if w > last_word:
            return limit
        x = words[w - w0]
    return min(w * 64 + np.int64(_cttz(x)), limit)
