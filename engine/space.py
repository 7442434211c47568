"""The genome search space: random genomes, mutation and crossover on encoded rows.

Rules are drawn from families whose operands are comparable (prices with moving averages,
oscillators with constants in their natural range, volume with its average, ATR with ATR), so the GA
does not waste evaluations on rules like ``close > rsi(14)``. Every random draw goes through the
``numpy.random.Generator`` passed in; nothing here keeps state of its own.
"""

from __future__ import annotations

import numpy as np

from engine import layout as L
from engine.settings import Bounds, RiskPreset

_ALL_OPS = np.array([L.GT, L.GE, L.LT, L.LE, L.CROSSES_ABOVE, L.CROSSES_BELOW], dtype=float)
_PRICE_LEFT = (L.CLOSE, L.SMA, L.EMA)
_AVERAGES = (L.SMA, L.EMA)
# Oscillator -> (constant low, constant high, mutation sigma); MACD histogram is compared with 0.
OSCILLATOR_RANGES = {
    L.RSI: (15.0, 85.0, 8.0),
    L.BB_PCTB: (-0.2, 1.2, 0.15),
    L.ROC: (-2.0, 2.0, 0.3),
    L.MACD_HIST: (0.0, 0.0, 0.0),
}
FAMILY_WEIGHTS = {"trend": 0.35, "oscillator": 0.40, "volume": 0.10, "volatility": 0.15}
_FAMILIES = list(FAMILY_WEIGHTS)
# A random genome has 1-4 entry rules, fewer more often: each AND cuts the trades, and a genome under min_trades
# ranks last, so a uniform draw spent most of a first generation on strategies that barely trade.
ENTRY_RULE_WEIGHTS = (0.4, 0.3, 0.2, 0.1)
_FAMILY_P = np.array(list(FAMILY_WEIGHTS.values()))


class GenomeSpace:
    """Where genomes live for one job: a risk preset and the menu of indicator periods."""

    def __init__(self, preset: RiskPreset, period_menu: tuple[int, ...]):
        self.preset = preset
        self.menu = np.array(sorted(period_menu), dtype=float)

    # ---- rules -------------------------------------------------------------------------------------
    def _period(self, rng: np.random.Generator) -> float:
        return float(self.menu[rng.integers(self.menu.size)])

    def _two_periods(self, rng: np.random.Generator) -> tuple[float, float]:
        a, b = rng.choice(self.menu.size, size=2, replace=False)
        return float(self.menu[a]), float(self.menu[b])

    def random_rule(self, rng: np.random.Generator) -> np.ndarray:
        family = _FAMILIES[rng.choice(len(_FAMILIES), p=_FAMILY_P)]
        op = float(_ALL_OPS[rng.integers(_ALL_OPS.size)])
        if family == "trend":
            left = _PRICE_LEFT[rng.integers(len(_PRICE_LEFT))]
            right = _AVERAGES[rng.integers(len(_AVERAGES))]
            p_left, p_right = self._two_periods(rng)
            return np.array([left, 0.0 if left == L.CLOSE else p_left, op, right, p_right, 0.0])
        if family == "oscillator":
            kinds = list(OSCILLATOR_RANGES)
            kind = kinds[rng.integers(len(kinds))]
            low, high, _ = OSCILLATOR_RANGES[kind]
            return np.array([kind, self._period(rng), op, L.CONSTANT, 0.0, rng.uniform(low, high)])
        if family == "volume":
            return np.array([L.VOLUME, 0.0, op, L.VOLUME_SMA, self._period(rng), 0.0])
        p_left, p_right = self._two_periods(rng)
        return np.array([L.ATR, p_left, op, L.ATR, p_right, 0.0])

    def _nearby_period(self, period: float, rng: np.random.Generator) -> float:
        index = int(np.argmin(np.abs(self.menu - period)))
        index = int(np.clip(index + rng.choice((-1, 1)), 0, self.menu.size - 1))
        return float(self.menu[index])

    def mutate_rule(self, rule: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Change one part of a rule (operator, a period, the constant) or redraw it whole."""
        rule = rule.copy()
        choice = rng.integers(4)
        if choice == 0:
            return self.random_rule(rng)
        if choice == 1:
            rule[L.R_OP] = _ALL_OPS[rng.integers(_ALL_OPS.size)]
        elif int(rule[L.R_RIGHT_KIND]) == L.CONSTANT and choice == 2:
            low, high, sigma = OSCILLATOR_RANGES.get(int(rule[L.R_LEFT_KIND]), (0.0, 0.0, 0.0))
            rule[L.R_CONSTANT] = min(max(rule[L.R_CONSTANT] + rng.normal(0, sigma), low), high)
        else:
            side = L.R_LEFT_PERIOD if rule[L.R_LEFT_PERIOD] > 0 and (
                rule[L.R_RIGHT_PERIOD] == 0 or rng.random() < 0.5) else L.R_RIGHT_PERIOD
            if rule[side] > 0:
                rule[side] = self._nearby_period(rule[side], rng)
        return rule

    # ---- genomes -----------------------------------------------------------------------------------
    @staticmethod
    def _draw(bounds: Bounds, rng: np.random.Generator) -> float:
        return float(rng.uniform(bounds.low, bounds.high))

    def random_genome(self, rng: np.random.Generator) -> np.ndarray:
        p = self.preset
        row = np.zeros(L.GENOME_WIDTH)
        n_entry = int(rng.choice(L.MAX_ENTRY_RULES, p=ENTRY_RULE_WEIGHTS)) + 1
        n_exit = int(rng.integers(0, L.MAX_EXIT_RULES + 1))
        row[L.N_ENTRY], row[L.N_EXIT] = n_entry, n_exit
        row[L.DIRECTION] = L.SHORT if p.allow_short and rng.random() < 0.5 else L.LONG
        row[L.SIZE] = self._draw(p.size, rng)
        row[L.LEVERAGE] = self._draw(p.leverage, rng)
        row[L.STOP_LOSS] = self._draw(p.stop_loss, rng) if rng.random() < 0.8 else 0.0
        row[L.TAKE_PROFIT] = self._draw(p.take_profit, rng) if rng.random() < 0.7 else 0.0
        row[L.TRAILING_STOP] = self._draw(p.trailing_stop, rng) if rng.random() < 0.3 else 0.0
        for k in range(n_entry):
            self._set_rule(row, L.ENTRY_OFFSET, k, self.random_rule(rng))
        for k in range(n_exit):
            self._set_rule(row, L.EXIT_OFFSET, k, self.random_rule(rng))
        return row

    def random_population(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` random genomes as a (size, GENOME_WIDTH) matrix."""
        return np.stack([self.random_genome(rng) for _ in range(size)])

    @staticmethod
    def _set_rule(row: np.ndarray, offset: int, k: int, rule: np.ndarray) -> None:
        row[offset + k * L.RULE_WIDTH: offset + (k + 1) * L.RULE_WIDTH] = rule

    @staticmethod
    def rules(row: np.ndarray, offset: int, count: int) -> list[np.ndarray]:
        return [row[offset + k * L.RULE_WIDTH: offset + (k + 1) * L.RULE_WIDTH].copy() for k in range(count)]

    def _with_rules(self, row: np.ndarray, entry: list[np.ndarray], exit_: list[np.ndarray]) -> np.ndarray:
        row = row.copy()
        row[L.ENTRY_OFFSET:] = 0.0
        row[L.N_ENTRY], row[L.N_EXIT] = len(entry), len(exit_)
        for k, rule in enumerate(entry):
            self._set_rule(row, L.ENTRY_OFFSET, k, rule)
        for k, rule in enumerate(exit_):
            self._set_rule(row, L.EXIT_OFFSET, k, rule)
        return row

    def crossover(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Risk genes uniformly from either parent; rules drawn from the pooled rules of both."""
        child = np.where(rng.random(L.HEADER_WIDTH) < 0.5, a[:L.HEADER_WIDTH], b[:L.HEADER_WIDTH])
        row = np.concatenate([child, np.zeros(L.GENOME_WIDTH - L.HEADER_WIDTH)])

        def pick(offset: int, count_col: int, minimum: int) -> list[np.ndarray]:
            pool = self.rules(a, offset, int(a[count_col])) + self.rules(b, offset, int(b[count_col]))
            counts = sorted((int(a[count_col]), int(b[count_col])))
            k = max(minimum, int(rng.integers(counts[0], counts[1] + 1)))
            chosen = np.argsort(rng.random(len(pool)))[:k]  # k distinct rules, kept in parent order
            return [pool[i] for i in sorted(chosen)]

        return self._with_rules(row, pick(L.ENTRY_OFFSET, L.N_ENTRY, 1), pick(L.EXIT_OFFSET, L.N_EXIT, 0))

    def mutate(self, row: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
        """Each gene changes with probability ``rate``; risk genes stay inside the preset's bounds.

        The optional exits (stop, target, trail) switch off, or back on at a fresh level, as well as move.
        """
        p = self.preset
        row = row.copy()
        for column, bounds in ((L.SIZE, p.size), (L.LEVERAGE, p.leverage)):
            if rng.random() < rate:
                row[column] = self._jitter(row[column], bounds, rng)
        for column, bounds in ((L.STOP_LOSS, p.stop_loss), (L.TAKE_PROFIT, p.take_profit),
                               (L.TRAILING_STOP, p.trailing_stop)):
            if rng.random() < rate:
                if row[column] == 0.0 or rng.random() < 0.2:
                    row[column] = self._draw(bounds, rng) if row[column] == 0.0 else 0.0
                else:
                    row[column] = self._jitter(row[column], bounds, rng)
        if p.allow_short and rng.random() < rate / 2:
            row[L.DIRECTION] = -row[L.DIRECTION]
        entry = self.rules(row, L.ENTRY_OFFSET, int(row[L.N_ENTRY]))
        exit_ = self.rules(row, L.EXIT_OFFSET, int(row[L.N_EXIT]))
        for rules, maximum, minimum in ((entry, L.MAX_ENTRY_RULES, 1), (exit_, L.MAX_EXIT_RULES, 0)):
            for k in range(len(rules)):
                if rng.random() < rate:
                    rules[k] = self.mutate_rule(rules[k], rng)
            if rng.random() < rate / 2:
                if len(rules) < maximum and (len(rules) == minimum or rng.random() < 0.5):
                    rules.append(self.random_rule(rng))
                elif len(rules) > minimum:
                    rules.pop(int(rng.integers(len(rules))))
        return self._with_rules(row, entry, exit_)

    @staticmethod
    def _jitter(value: float, bounds: Bounds, rng: np.random.Generator) -> float:
        if bounds.high == bounds.low:
            return bounds.low
        return min(max(value + rng.normal(0, 0.2 * (bounds.high - bounds.low)), bounds.low), bounds.high)
