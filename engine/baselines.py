"""What a mined strategy has to beat: buy-and-hold, and the best of random strategies at the same budget.

The search *budget* is the number of genome evaluations a search spends: population x generations. The random
baseline spends exactly that budget on genomes drawn from the job's genome space (same risk preset, same
period menu), scored with the same folds, evaluator and min_trades rule; the search benchmarks use the same
definitions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.backtester import Window
from engine.candles import Candles
from engine.ga import GeneticSearch
from engine.settings import Costs, MinerSettings

RANDOM_BASELINE_STREAM = 0xBA5E


def budget(settings: MinerSettings) -> int:
    """Genome evaluations one search spends."""
    return settings.population * settings.generations


def buy_and_hold_pct(candles: Candles, window: Window, costs: Costs) -> float:
    """Return in % of buying at the window's first open and selling at its last close, fees and slippage paid."""
    fill = candles.open[window.start] * (1.0 + costs.slippage)
    exit_price = candles.close[window.end - 1] * (1.0 - costs.slippage)
    return 100.0 * (exit_price * (1.0 - costs.fee) / (fill * (1.0 + costs.fee)) - 1.0)


class RandomSearch(GeneticSearch):
    """Random sampling with the search's interface: every generation is a fresh random population.

    It keeps the best genome seen, like the GA, and draws from its own random streams of the job's seed.
    """

    random = True

    def __init__(self, settings: MinerSettings, *, state: dict | None = None, asked: Sequence[np.ndarray] = ()):
        super().__init__(settings, state=state, stream=RANDOM_BASELINE_STREAM, asked=asked)

    def _first_generation(self) -> list[np.ndarray]:
        return [self.space.random_population(n, island.rng) for n, island in zip(self.sizes, self.islands,
                                                                                  strict=True)]
