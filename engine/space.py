"""The genome search space of one job: a risk preset and the menu of indicator periods.

A thin face over the compiled kernels of ``engine.breeding``: each call draws a 32-bit seed from the
``numpy.random.Generator`` passed in, so the job's generator (checkpointed with the search) decides every draw and
nothing here keeps state of its own. A whole generation goes through one call (``random_population``, ``breed``,
``mutate``); the one-row methods serve tools and tests.
"""

from __future__ import annotations

import numpy as np

from engine import breeding as B
from engine import layout as L
from engine.settings import RiskPreset

# the oscillator screen's grid step, in mutation sigmas: 10 ROC levels, 7 RSI, 7 %B, so that with both directions the
# whole screen (900 genomes) fits in a 1,000-genome first generation (0.8 sigma gave 17, 11, 12: 1,476 genomes)
SCREEN_STEP = 1.4


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**32))


class GenomeSpace:
    def __init__(self, preset: RiskPreset, period_menu: tuple[int, ...]):
        self.preset = preset
        self.menu = np.array(sorted(period_menu), dtype=float)
        self.bounds = np.array([[b.low, b.high] for b in (preset.size, preset.leverage, preset.stop_loss,
                                                          preset.take_profit, preset.trailing_stop)])
        self.allow_short = bool(preset.allow_short)
        self.stop_required = bool(preset.stop_required)

    # ---- whole generations -------------------------------------------------------------------------
    def random_population(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` random genomes as a (size, GENOME_WIDTH) matrix."""
        return B.random_population_nb(size, self.menu, self.bounds, self.allow_short, self.stop_required, _seed(rng))

    def breed(self, pool: np.ndarray, parents: np.ndarray, crossing: np.ndarray, rate: float,
              rng: np.random.Generator) -> np.ndarray:
        """One mutated child per (mother, father) row of ``parents``, crossed over where ``crossing``."""
        return B.breed_nb(np.ascontiguousarray(pool, dtype=np.float64), np.ascontiguousarray(parents, dtype=np.int64),
                          np.ascontiguousarray(crossing, dtype=np.bool_), float(rate), self.menu, self.bounds,
                          self.allow_short, self.stop_required, _seed(rng))

    def screen(self) -> tuple[np.ndarray, np.ndarray]:
        """The oscillator screen: every oscillator of the menu's periods above and below each level of a grid over
        its constant's range (a step of ``SCREEN_STEP`` mutation sigmas), each traded long and short (long only
        where the preset allows no shorts), as (rules (n, RULE_WIDTH), directions (n,))."""
        rules = []
        for kind, low, high, sigma in B.OSCILLATORS:
            levels = np.linspace(low, high, int((high - low) / (SCREEN_STEP * sigma)) + 1) if sigma else [low]
            for period in self.menu:
                for op in (L.LT, L.GT):
                    for level in levels:
                        rule = np.zeros(L.RULE_WIDTH)
                        rule[[L.R_LEFT_KIND, L.R_LEFT_PERIOD, L.R_OP, L.R_RIGHT_KIND, L.R_CONSTANT]] = (
                            kind, period, op, L.CONSTANT, level)
                        rules.append(rule)
        directions = (L.LONG, L.SHORT) if self.allow_short else (L.LONG,)
        return np.repeat(rules, len(directions), axis=0), np.tile(directions, len(rules))

    def at_exit_scale(self, rows: np.ndarray, scale: int, scales: int, rng: np.random.Generator) -> np.ndarray:
        """A copy of ``rows`` with a take-profit and a stop-loss on, each drawn log-uniform in slice ``scale`` of
        ``scales`` equal slices of its log range (the presets' exit bounds are above 0), 0 the tightest: strategies
        that hold a trade for about as long (docs/search.md, "Each island starts at its own exit scale")."""
        rows = np.array(rows, dtype=np.float64)
        for column, gene in ((L.TAKE_PROFIT, B.B_TAKE_PROFIT), (L.STOP_LOSS, B.B_STOP_LOSS)):
            low, high = np.log(self.bounds[gene])
            drawn = rng.uniform(low + (high - low) * scale / scales, low + (high - low) * (scale + 1) / scales,
                                rows.shape[0])
            rows[:, column] = np.clip(np.exp(drawn), *self.bounds[gene])
        return rows

    # ---- one row -----------------------------------------------------------------------------------
    def random_genome(self, rng: np.random.Generator) -> np.ndarray:
        return self.random_population(1, rng)[0]

    def random_rule(self, rng: np.random.Generator) -> np.ndarray:
        rule = np.zeros(L.RULE_WIDTH)
        B.seeded_rule_nb(self.menu, rule, _seed(rng))
        return rule

    def mutate(self, rows: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
        """Mutated copies of ``rows`` (one row or a matrix of them): each gene changes with probability ``rate``,
        inside the preset's bounds."""
        rows = np.asarray(rows, dtype=np.float64)
        mutated = B.mutate_nb(np.ascontiguousarray(np.atleast_2d(rows)), float(rate), self.menu, self.bounds,
                              self.allow_short, self.stop_required, _seed(rng))
        return mutated.reshape(rows.shape)

    def crossover(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Risk genes uniformly from either parent; rules drawn from the pooled rules of both."""
        return B.crossover_nb(np.asarray(a, dtype=np.float64)[None, :], np.asarray(b, dtype=np.float64)[None, :],
                              _seed(rng))[0]

    # ---- rule slots --------------------------------------------------------------------------------
    @staticmethod
    def rules(row: np.ndarray, offset: int, count: int) -> list[np.ndarray]:
        return [row[offset + k * L.RULE_WIDTH: offset + (k + 1) * L.RULE_WIDTH].copy() for k in range(count)]

    @staticmethod
    def with_rules(row: np.ndarray, entry: list[np.ndarray], exit_: list[np.ndarray]) -> np.ndarray:
        """A copy of ``row`` with these entry and exit rules (packed from slot 0, unused slots zero)."""
        row = np.array(row, dtype=np.float64)
        row[L.ENTRY_OFFSET:] = 0.0
        row[L.N_ENTRY], row[L.N_EXIT] = len(entry), len(exit_)
        for offset, rules in ((L.ENTRY_OFFSET, entry), (L.EXIT_OFFSET, exit_)):
            for k, rule in enumerate(rules):
                row[offset + k * L.RULE_WIDTH: offset + (k + 1) * L.RULE_WIDTH] = rule
        return row
