"""Numba kernels of the genome space: random genomes, mutation and crossover, a whole generation per call.

Why compiled: bred one child at a time in Python, a generation of 1,000 genomes took 70-200 ms of serial time in
the coordinator, while 22 workers backtest it in tens of milliseconds; the workers waited. Here a generation takes
about a millisecond.

Randomness: every entry point takes a 32-bit ``seed`` drawn by the caller from the job's
``numpy.random.Generator``, and seeds Numba's own generator (one per thread) with it before drawing anything.
So the children are a pure function of (inputs, seed), and the job's generator, which is checkpointed, decides
everything: the same seed and settings breed the same genomes on any machine and after any restart.

Rules are drawn from families whose operands are comparable (prices with moving averages, oscillators with
constants in their natural range, volume with its average, ATR with ATR), so the search does not spend
backtests on rules like ``close > rsi(14)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine import layout as L

OPS = np.array([L.GT, L.GE, L.LT, L.LE, L.CROSSES_ABOVE, L.CROSSES_BELOW], dtype=np.float64)
PRICE_LEFT = np.array([L.CLOSE, L.SMA, L.EMA], dtype=np.float64)
AVERAGES = np.array([L.SMA, L.EMA], dtype=np.float64)
# Oscillators and their constants: (kind, low, high, mutation sigma); the MACD histogram is compared with 0.
OSCILLATORS = np.array([
    [L.RSI, 15.0, 85.0, 8.0],
    [L.BB_PCTB, -0.2, 1.2, 0.15],
    [L.ROC, -2.0, 2.0, 0.3],
    [L.MACD_HIST, 0.0, 0.0, 0.0],
])
# Rule families, cumulative: trend 35 %, oscillator 40 %, volume 10 %, volatility 15 %.
FAMILY_CUMULATIVE = np.array([0.35, 0.75, 0.85, 1.0])
# A random genome has 1-4 entry rules, fewer more often (cumulative 40/30/20/10 %): each AND cuts the trades, and a
# genome under min_trades ranks last, so a uniform draw spent most of a first generation on strategies that barely
# trade.
ENTRY_RULES_CUMULATIVE = np.array([0.4, 0.7, 0.9, 1.0])
# Rows of the ``bounds`` matrix (low, high) passed to the kernels, one per risk gene.
B_SIZE, B_LEVERAGE, B_STOP_LOSS, B_TAKE_PROFIT, B_TRAILING_STOP = range(5)
# Probability that a random genome has each optional exit switched on.
P_STOP, P_TARGET, P_TRAIL = 0.8, 0.7, 0.3


@njit(cache=True, nogil=True)
def _copy(source, source_at, target, target_at, count):
    """target[target_at:+count] = source[source_at:+count], as a loop: Numba compiles array-to-array slice
    assignment into broadcasting code that takes seconds to build."""
    for j in range(count):
        target[target_at + j] = source[source_at + j]


@njit(cache=True, nogil=True)
def _draw(bounds, gene):
    return np.random.uniform(bounds[gene, 0], bounds[gene, 1])


@njit(cache=True, nogil=True)
def _draw_exit(bounds, gene):
    """A fresh stop, target or trail: log-uniform between the bounds, as each is a scale spanning up to 15x (1 % to
    15 % at HIGH). A uniform draw put half of HIGH's targets above 8 %, far wider than the moves a 5-minute signal
    predicts, so the first generation tested a right rule mostly with exits that drowned it (docs/search.md).
    Mutation still moves them by a fifth of the range: moving them on the log scale too lost planted runs."""
    low, high = bounds[gene, 0], bounds[gene, 1]
    if low <= 0.0 or high <= low:
        return np.random.uniform(low, high)
    return min(max(np.exp(np.random.uniform(np.log(low), np.log(high))), low), high)


@njit(cache=True, nogil=True)
def _jitter(value, bounds, gene):
    low, high = bounds[gene, 0], bounds[gene, 1]
    if high == low:
        return low
    return min(max(value + np.random.normal(0.0, 0.2 * (high - low)), low), high)


@njit(cache=True, nogil=True)
def _two_periods(menu):
    """Two different periods of the menu (the same one if the menu has only one)."""
    a = np.random.randint(0, menu.size)
    if menu.size == 1:
        return menu[a], menu[a]
    b = np.random.randint(0, menu.size - 1)
    if b >= a:
        b += 1
    return menu[a], menu[b]


@njit(cache=True, nogil=True)
def random_rule_nb(menu, rule):
    """Write a random rule into ``rule`` (RULE_WIDTH values)."""
    u = np.random.random()
    op = OPS[np.random.randint(0, OPS.size)]
    rule[:] = 0.0
    rule[L.R_OP] = op
    if u < FAMILY_CUMULATIVE[0]:  # trend: a price or average against an average
        left = PRICE_LEFT[np.random.randint(0, PRICE_LEFT.size)]
        p_left, p_right = _two_periods(menu)
        rule[L.R_LEFT_KIND] = left
        rule[L.R_LEFT_PERIOD] = 0.0 if left == L.CLOSE else p_left
        rule[L.R_RIGHT_KIND] = AVERAGES[np.random.randint(0, AVERAGES.size)]
        rule[L.R_RIGHT_PERIOD] = p_right
    elif u < FAMILY_CUMULATIVE[1]:  # oscillator against a constant in its range
        k = np.random.randint(0, OSCILLATORS.shape[0])
        rule[L.R_LEFT_KIND] = OSCILLATORS[k, 0]
        rule[L.R_LEFT_PERIOD] = menu[np.random.randint(0, menu.size)]
        rule[L.R_RIGHT_KIND] = L.CONSTANT
        rule[L.R_CONSTANT] = np.random.uniform(OSCILLATORS[k, 1], OSCILLATORS[k, 2])
    elif u < FAMILY_CUMULATIVE[2]:  # volume against its average
        rule[L.R_LEFT_KIND] = L.VOLUME
        rule[L.R_RIGHT_KIND] = L.VOLUME_SMA
        rule[L.R_RIGHT_PERIOD] = menu[np.random.randint(0, menu.size)]
    else:  # volatility: ATR against ATR
        p_left, p_right = _two_periods(menu)
        rule[L.R_LEFT_KIND] = L.ATR
        rule[L.R_LEFT_PERIOD] = p_left
        rule[L.R_RIGHT_KIND] = L.ATR
        rule[L.R_RIGHT_PERIOD] = p_right


@njit(cache=True, nogil=True)
def _nearby_period(menu, period):
    index = np.argmin(np.abs(menu - period)) + (-1 if np.random.random() < 0.5 else 1)
    return menu[min(max(index, 0), menu.size - 1)]


@njit(cache=True, nogil=True)
def _mutate_rule(menu, rule):
    """Change one part of a rule (operator, a period, the constant) or redraw it whole."""
    choice = np.random.randint(0, 4)
    if choice == 0:
        random_rule_nb(menu, rule)
    elif choice == 1:
        rule[L.R_OP] = OPS[np.random.randint(0, OPS.size)]
    elif rule[L.R_RIGHT_KIND] == L.CONSTANT and choice == 2:
        for k in range(OSCILLATORS.shape[0]):
            if OSCILLATORS[k, 0] == rule[L.R_LEFT_KIND]:
                low, high = OSCILLATORS[k, 1], OSCILLATORS[k, 2]
                moved = rule[L.R_CONSTANT] + np.random.normal(0.0, OSCILLATORS[k, 3])
                rule[L.R_CONSTANT] = min(max(moved, low), high)
    else:
        use_left = rule[L.R_LEFT_PERIOD] > 0 and (rule[L.R_RIGHT_PERIOD] == 0 or np.random.random() < 0.5)
        side = L.R_LEFT_PERIOD if use_left else L.R_RIGHT_PERIOD
        if rule[side] > 0:
            rule[side] = _nearby_period(menu, rule[side])


@njit(cache=True, nogil=True)
def _random_genome(menu, bounds, allow_short, stop_required, row):
    row[:] = 0.0
    u = np.random.random()
    n_entry = 1
    while u >= ENTRY_RULES_CUMULATIVE[n_entry - 1]:
        n_entry += 1
    n_exit = np.random.randint(0, L.MAX_EXIT_RULES + 1)
    row[L.N_ENTRY], row[L.N_EXIT] = n_entry, n_exit
    row[L.DIRECTION] = L.SHORT if allow_short and np.random.random() < 0.5 else L.LONG
    row[L.SIZE] = _draw(bounds, B_SIZE)
    row[L.LEVERAGE] = _draw(bounds, B_LEVERAGE)
    row[L.STOP_LOSS] = _draw_exit(bounds, B_STOP_LOSS) if np.random.random() < P_STOP or stop_required else 0.0
    row[L.TAKE_PROFIT] = _draw_exit(bounds, B_TAKE_PROFIT) if np.random.random() < P_TARGET else 0.0
    row[L.TRAILING_STOP] = _draw_exit(bounds, B_TRAILING_STOP) if np.random.random() < P_TRAIL else 0.0
    for k in range(n_entry):
        random_rule_nb(menu, row[L.ENTRY_OFFSET + k * L.RULE_WIDTH: L.ENTRY_OFFSET + (k + 1) * L.RULE_WIDTH])
    for k in range(n_exit):
        random_rule_nb(menu, row[L.EXIT_OFFSET + k * L.RULE_WIDTH: L.EXIT_OFFSET + (k + 1) * L.RULE_WIDTH])


@njit(cache=True, nogil=True)
def _mutate_rules(menu, rate, row, offset, count_col, maximum, minimum):
    """Mutate each rule of one group with probability ``rate``; add or drop one with probability ``rate / 2``.
    The group stays packed from slot 0, unused slots zero."""
    count = int(row[count_col])
    for k in range(count):
        if np.random.random() < rate:
            _mutate_rule(menu, row[offset + k * L.RULE_WIDTH: offset + (k + 1) * L.RULE_WIDTH])
    if np.random.random() < rate / 2:
        if count < maximum and (count == minimum or np.random.random() < 0.5):
            random_rule_nb(menu, row[offset + count * L.RULE_WIDTH: offset + (count + 1) * L.RULE_WIDTH])
            count += 1
        elif count > minimum:
            gone = np.random.randint(0, count)
            end = offset + count * L.RULE_WIDTH
            start = offset + gone * L.RULE_WIDTH
            _copy(row, start + L.RULE_WIDTH, row, start, end - start - L.RULE_WIDTH)
            row[end - L.RULE_WIDTH: end] = 0.0
            count -= 1
    row[count_col] = count


@njit(cache=True, nogil=True)
def _mutate(menu, bounds, allow_short, stop_required, rate, row):
    """Each gene changes with probability ``rate``; risk genes stay inside the preset's bounds. The optional exits
    (stop, target, trail) switch off, or back on at a fresh level, as well as move."""
    if np.random.random() < rate:
        row[L.SIZE] = _jitter(row[L.SIZE], bounds, B_SIZE)
    if np.random.random() < rate:
        row[L.LEVERAGE] = _jitter(row[L.LEVERAGE], bounds, B_LEVERAGE)
    for k in range(3):  # stop, target, trail: adjacent columns and adjacent rows of ``bounds``
        column, gene = L.STOP_LOSS + k, B_STOP_LOSS + k
        if np.random.random() < rate:
            if row[column] == 0.0:
                row[column] = _draw_exit(bounds, gene)
            elif np.random.random() < 0.2 and not (k == 0 and stop_required):
                row[column] = 0.0
            else:
                row[column] = _jitter(row[column], bounds, gene)
    if allow_short and np.random.random() < rate / 2:
        row[L.DIRECTION] = -row[L.DIRECTION]
    _mutate_rules(menu, rate, row, L.ENTRY_OFFSET, L.N_ENTRY, L.MAX_ENTRY_RULES, 1)
    _mutate_rules(menu, rate, row, L.EXIT_OFFSET, L.N_EXIT, L.MAX_EXIT_RULES, 0)


@njit(cache=True, nogil=True)
def _pick_rules(a, b, offset, count_col, minimum, child):
    """Into ``child``: k distinct rules of the two parents' pooled rules, in parent order, k between the parents'
    counts (at least ``minimum``)."""
    na, nb = int(a[count_col]), int(b[count_col])
    k = max(minimum, np.random.randint(min(na, nb), max(na, nb) + 1))
    slot = 0  # selection sampling (Knuth's algorithm S): k of the pool, each subset equally likely, order kept
    for i in range(na + nb):
        if np.random.random() * (na + nb - i) < k - slot:
            parent, rule = (a, i) if i < na else (b, i - na)
            _copy(parent, offset + rule * L.RULE_WIDTH, child, offset + slot * L.RULE_WIDTH, L.RULE_WIDTH)
            slot += 1
    child[count_col] = k


@njit(cache=True, nogil=True)
def _crossover(a, b, child):
    """Risk genes uniformly from either parent; rules drawn from the pooled rules of both."""
    child[:] = 0.0
    for column in range(L.HEADER_WIDTH):
        child[column] = a[column] if np.random.random() < 0.5 else b[column]
    _pick_rules(a, b, L.ENTRY_OFFSET, L.N_ENTRY, 1, child)
    _pick_rules(a, b, L.EXIT_OFFSET, L.N_EXIT, 0, child)


@njit(cache=True, nogil=True)
def random_population_nb(count, menu, bounds, allow_short, stop_required, seed):
    np.random.seed(seed)
    rows = np.empty((count, L.GENOME_WIDTH))
    for i in range(count):
        _random_genome(menu, bounds, allow_short, stop_required, rows[i])
    return rows


@njit(cache=True, nogil=True)
def mutate_nb(rows, rate, menu, bounds, allow_short, stop_required, seed):
    """Mutated copies of ``rows``."""
    np.random.seed(seed)
    out = rows.copy()  # a whole-array copy compiles fast; slice-to-slice assignment does not
    for i in range(out.shape[0]):
        _mutate(menu, bounds, allow_short, stop_required, rate, out[i])
    return out


@njit(cache=True, nogil=True)
def crossover_nb(mothers, fathers, seed):
    np.random.seed(seed)
    out = np.empty_like(mothers)
    for i in range(out.shape[0]):
        _crossover(mothers[i], fathers[i], out[i])
    return out


@njit(cache=True, nogil=True)
def breed_nb(pool, parents, crossing, rate, menu, bounds, allow_short, stop_required, seed):
    """One child per row of ``parents`` (mother, father indices into ``pool``): the parents' crossover where
    ``crossing``, else a copy of the mother, then mutated."""
    np.random.seed(seed)
    children = np.empty((parents.shape[0], L.GENOME_WIDTH))
    for i in range(parents.shape[0]):
        if crossing[i]:
            _crossover(pool[parents[i, 0]], pool[parents[i, 1]], children[i])
        else:
            _copy(pool[parents[i, 0]], 0, children[i], 0, L.GENOME_WIDTH)
        _mutate(menu, bounds, allow_short, stop_required, rate, children[i])
    return children


@njit(cache=True, nogil=True)
def seeded_rule_nb(menu, rule, seed):
    np.random.seed(seed)
    random_rule_nb(menu, rule)
