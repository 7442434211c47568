"""Ask/tell genetic search over encoded genomes.

The search does not know where genomes are evaluated: ``ask()`` returns the population matrix,
``tell(fitness)`` takes one fitness per row (by row index, never by completion order) and breeds the
next generation. Its whole state (population, generation, best so far, RNG state) is a JSON-able
dict, so a job can be checkpointed after any generation and resumed bit-for-bit.
"""

from __future__ import annotations

import numpy as np

from engine.settings import MinerSettings
from engine.space import GenomeSpace


class GeneticSearch:
    """``stream`` > 0 draws from an independent random stream of the same seed (used by baselines)."""

    def __init__(self, settings: MinerSettings, *, state: dict | None = None, stream: int = 0):
        self.settings = settings
        self.space = GenomeSpace(settings.preset, settings.period_menu)
        seed = settings.seed if stream == 0 else np.random.SeedSequence([settings.seed, stream])
        self.rng = np.random.Generator(np.random.PCG64(seed))
        if state is None:
            self.generation = 0
            self.population = self.space.random_population(settings.population, self.rng)
            self.best_row: np.ndarray | None = None
            self.best_fitness = -np.inf
            self.history: list[float] = []
        else:
            self._restore(state)

    @property
    def done(self) -> bool:
        return self.generation >= self.settings.generations

    def ask(self) -> np.ndarray:
        """The current generation's genomes, one encoded row each (a copy)."""
        return self.population.copy()

    def tell(self, fitness: np.ndarray) -> None:
        """Score the current generation and breed the next one."""
        fitness = np.asarray(fitness, dtype=np.float64)
        if fitness.shape != (self.population.shape[0],):
            raise ValueError(f"expected {self.population.shape[0]} fitness values, got shape {fitness.shape}")
        fitness = np.where(np.isfinite(fitness), fitness, -np.inf)
        order = np.argsort(-fitness, kind="stable")
        if self.best_row is None or fitness[order[0]] > self.best_fitness:
            self.best_row, self.best_fitness = self.population[order[0]].copy(), float(fitness[order[0]])
        self.history.append(float(fitness[order[0]]))
        self.generation += 1
        if not self.done:
            self.population = self._breed(fitness, order)

    def _breed(self, fitness: np.ndarray, order: np.ndarray) -> np.ndarray:
        s, rng = self.settings, self.rng
        children = [self.population[i].copy() for i in order[: s.elite]]
        n_children = s.population - s.elite
        parents = self._tournaments(fitness, 2 * n_children).reshape(n_children, 2)
        crossing = rng.random(n_children) < s.crossover_rate
        for (mother, father), cross in zip(parents, crossing, strict=True):
            if cross:
                child = self.space.crossover(self.population[mother], self.population[father], rng)
            else:
                child = self.population[mother].copy()
            children.append(self.space.mutate(child, s.mutation_rate, rng))
        return np.stack(children)

    def _tournaments(self, fitness: np.ndarray, count: int) -> np.ndarray:
        """Winners of ``count`` tournaments of ``tournament_size`` genomes drawn with replacement.

        Each winner is its tournament's fittest; a tie goes to the contender drawn first.
        """
        contenders = self.rng.integers(0, fitness.size, size=(count, self.settings.tournament_size))
        return contenders[np.arange(count), np.argmax(fitness[contenders], axis=1)]

    # ---- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "generation": self.generation,
            "population": self.population.tolist(),
            "best_row": None if self.best_row is None else self.best_row.tolist(),
            "best_fitness": self.best_fitness if np.isfinite(self.best_fitness) else None,
            "history": list(self.history),
            "rng": self.rng.bit_generator.state,
        }

    def _restore(self, state: dict) -> None:
        self.generation = int(state["generation"])
        self.population = np.asarray(state["population"], dtype=np.float64)
        self.best_row = None if state["best_row"] is None else np.asarray(state["best_row"], dtype=np.float64)
        self.best_fitness = -np.inf if state["best_fitness"] is None else float(state["best_fitness"])
        self.history = [float(x) for x in state["history"]]
        self.rng.bit_generator.state = state["rng"]
