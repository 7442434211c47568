"""Ask/tell island-model genetic search over encoded genomes.

The search does not know where genomes are evaluated: ``ask()`` returns the generation's genomes, ``tell(fitness)``
takes one fitness per row (by row index, never by completion order) and breeds the next generation. Its state is
small, so a job can be checkpointed after any generation and resumed bit-for-bit. Between two migrations each island
evolves on its own (``engine.islands``): ``island_epoch`` hands out an island's generations up to the next migration,
to be run anywhere (``engine.islands.run_epoch``: a worker backtests and breeds them), and ``tell_epoch`` takes every
island's outcome back. Told either way, generation by generation or epoch by epoch, a search gives the same genomes.

**Islands** (D. Whitley, S. Rana, R. Heckendorn, "The island model genetic algorithm: on separability, population
size and convergence", 1999): the population is split into ``islands`` sub-populations that breed apart and pass
their best genome along a ring every ``MIGRATION_INTERVAL`` generations. One population converges on the first
decent strategy it meets; several explore several. An island whose best has not improved for
``STAGNATION_LIMIT`` generations starts again from random genomes (the job's best is kept). The number of islands
is a job setting, never the cluster's shape, so the result is the same on one laptop or two.

**Every genome an island asks for is new to it** (``engine.islands``): the budget, population x generations, is
spent on distinct strategies, and elites keep their fitness instead of being backtested again. The islands' memory
of keys is not in the state, which would then grow with every generation, but rebuilt from the keys of the
populations asked for, which the caller keeps: one array per generation, appended once (``asked``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from engine import layout as L
from engine.genome import genome_keys
from engine.islands import (
    ISLAND_SEEN_LIMIT,
    MIGRATION_INTERVAL,
    EpochOutcome,
    GenerationOutcome,
    Island,
    IslandEpoch,
    SeenGenomes,
    after_epoch,
    breeder_for,
    island_rng,
    migrated,
    step,
)
from engine.settings import MinerSettings
from engine.space import GenomeSpace

MIN_ISLAND_SIZE = 8  # a population smaller than islands x this runs fewer islands


def island_sizes(population: int, islands: int) -> list[int]:
    """Genomes per island: as equal as possible, at least ``MIN_ISLAND_SIZE`` each (so fewer islands if needed)."""
    count = max(1, min(islands, population // MIN_ISLAND_SIZE))
    base, extra = divmod(population, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


class SearchStateTooOld(ValueError):
    """A checkpoint written by an earlier search, which this one cannot resume to the result it started towards."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class GeneticSearch:
    """``stream`` > 0 draws from independent random streams of the same seed (used by baselines). A search resumes
    from ``state`` and ``asked``: the keys of the populations it asked for and was told about, one array per
    generation in order (``genome_keys`` of each; kept by the caller, so that the checkpoint stays small)."""

    random = False  # every generation random genomes (the random baseline)

    def __init__(self, settings: MinerSettings, *, state: dict | None = None, stream: int = 0,
                 asked: Sequence[np.ndarray] = ()):
        self.settings, self.stream = settings, stream
        self.sizes = island_sizes(settings.population, settings.islands)
        self.elite = min(settings.elite, min(self.sizes) - 1)
        self.breeder = breeder_for(settings, self.elite, self.random)
        self.space: GenomeSpace = self.breeder.space
        if state is None:
            self.generation = 0
            self.best_row: np.ndarray | None = None
            self.best_fitness = -np.inf
            self.history: list[float] = []
            self.islands = [Island(np.empty((0, L.GENOME_WIDTH)), self._rng(i)) for i in range(len(self.sizes))]
            for island, rows in zip(self.islands, self._first_generation(), strict=True):
                island.rows = self.breeder.claim(island, rows)
                island.seen.seal()
        else:
            self.generation = int(state["generation"])
            if any("rng" not in island for island in state["islands"]):
                raise SearchStateTooOld(
                    "the job's checkpoint was written by the search as it was before islands had their own random "
                    "streams (2026-12-05): it cannot resume to the result it started towards; its events and best "
                    "so far are kept; submit the job again")
            if len(asked) != self.generation:
                raise ValueError(f"a search at generation {self.generation} needs the asked keys of as many "
                                 f"generations to resume, got {len(asked)}")
            self.best_row = None if state["best_row"] is None else np.array(state["best_row"], dtype=np.float64)
            self.best_fitness = float(np.asarray(state["best_fitness"]).reshape(-1)[0])
            self.history = np.asarray(state["history"], dtype=np.float64).tolist()
            self.islands = []
            for index, (island, (lo, hi)) in enumerate(zip(state["islands"], self.island_bounds, strict=True)):
                rows = np.asarray(island["rows"], dtype=np.float64).reshape(-1, L.GENOME_WIDTH)
                bred = [] if self.done else [genome_keys(rows)]  # asked for, not yet told about
                seen = SeenGenomes([*(keys[lo:hi] for keys in asked), *bred], ISLAND_SEEN_LIMIT)
                self.islands.append(Island.restore(island, seen, self._rng(index)))

    def _rng(self, index: int) -> np.random.Generator:
        return island_rng(self.settings.seed, self.stream, index)

    @property
    def done(self) -> bool:
        return self.generation >= self.settings.generations

    def ask(self) -> np.ndarray:
        """The current generation's genomes, one encoded row each, island after island (a copy)."""
        return np.concatenate([island.rows for island in self.islands])

    @property
    def island_bounds(self) -> list[tuple[int, int]]:
        """Each island's rows in ``ask()``'s population, as (start, stop)."""
        edges = np.cumsum([0, *self.sizes]).tolist()
        return list(itertools.pairwise(edges))

    def tell(self, fitness: np.ndarray, fold_metrics: np.ndarray | None = None,
             keep: int = 0) -> list[GenerationOutcome]:
        """Score the current generation (``fold_metrics`` (n, folds, metrics) if the caller keeps any: of ``keep``
        fittest distinct genomes per island) and breed the next one; each island's outcome, in order."""
        fitness = np.asarray(fitness, dtype=np.float64)
        if fitness.shape != (sum(self.sizes),):
            raise ValueError(f"expected {sum(self.sizes)} fitness values, got shape {fitness.shape}")
        breeds = self.generation + 1 < self.settings.generations
        outcomes = [step(island, self.breeder, fitness[lo:hi], None if fold_metrics is None else fold_metrics[lo:hi],
                         keep, breeds) for island, (lo, hi) in zip(self.islands, self.island_bounds, strict=True)]
        self._close_generation(outcomes)
        self._migrate_if_due()
        return outcomes

    # ---- epochs ----------------------------------------------------------------------------------------------
    def _epoch_stop(self, generation: int) -> int:
        """The generation an epoch starting at ``generation`` ends before: the next migration, or the search's end."""
        return min(self.settings.generations, (generation // MIGRATION_INTERVAL + 1) * MIGRATION_INTERVAL)

    @property
    def epoch_stop(self) -> int:
        return self._epoch_stop(self.generation)

    def _migrates_after(self, stop: int) -> bool:
        """Whether the islands migrate after the epoch ending before ``stop`` (not after the search's last)."""
        return len(self.islands) > 1 and stop < self.settings.generations and stop % MIGRATION_INTERVAL == 0

    def island_epoch(self, index: int, floor: float = -np.inf) -> IslandEpoch:
        """Island ``index``'s generations from the current one to the next migration, to be run anywhere; of genomes
        under ``floor`` it keeps the fitness alone."""
        island = self.islands[index]
        return IslandEpoch(self.settings, self.random, self.stream, index, self.elite, island.state(),
                           list(island.seen.chunks), self.generation, self.epoch_stop, floor)

    def next_island_epoch(self, epoch: IslandEpoch, outcome: EpochOutcome, sender: EpochOutcome,
                          floor: float = -np.inf) -> IslandEpoch | None:
        """An island's next epoch from its last one, its outcome and the outcome of the island before it on the
        ring (its migrant's), before the other islands are back: the epoch ``tell_epoch`` then ``island_epoch`` would
        give. None after the search's last."""
        if not epoch.continues:
            return None
        state, seen = after_epoch(epoch.seen, outcome, sender if self._migrates_after(epoch.stop) else None, True)
        return dataclasses.replace(epoch, state=state, seen=seen, start=epoch.stop,
                                   stop=self._epoch_stop(epoch.stop), floor=floor)

    def tell_epoch(self, outcomes: Sequence[EpochOutcome]) -> list[list[GenerationOutcome]]:
        """Every island's outcome of the current epoch, in island order; each generation's outcomes, island by
        island. The islands take their states after the epoch, and migrate if it is time."""
        if [outcome.index for outcome in outcomes] != list(range(len(self.islands))):
            raise ValueError(f"an epoch is told with one outcome per island in order, got islands "
                             f"{[outcome.index for outcome in outcomes]}")
        stop = self.epoch_stop
        if any(len(outcome.generations) != stop - self.generation for outcome in outcomes):
            raise ValueError(f"an epoch outcome holds generations {self.generation} to {stop - 1}")
        migrates = self._migrates_after(stop)
        for index, outcome in enumerate(outcomes):
            island = self.islands[index]
            state, seen = after_epoch(island.seen.chunks, outcome, outcomes[index - 1] if migrates else None,
                                      stop < self.settings.generations)
            self.islands[index] = Island.restore(state, SeenGenomes(seen), island.rng)
        by_generation = [list(generation) for generation in zip(*(o.generations for o in outcomes), strict=True)]
        for generation in by_generation:
            self._close_generation(generation)
        return by_generation

    # ---- between generations ---------------------------------------------------------------------------------
    def _close_generation(self, outcomes: Sequence[GenerationOutcome]) -> None:
        """The job's best (the first of equals, island after island) and history after a told generation."""
        for outcome in outcomes:
            top = outcome.top
            fitness = float(outcome.fitness[outcome.kept[top]])
            if self.best_row is None or fitness > self.best_fitness:
                self.best_row, self.best_fitness = outcome.rows[top].copy(), fitness
        self.history.append(self.best_fitness)
        self.generation += 1

    def _migrate_if_due(self) -> None:
        """Each island's best elite joins the next island's elites (a ring) every ``MIGRATION_INTERVAL``
        generations."""
        if not self._migrates_after(self.generation):
            return
        states = [{"elite_rows": island.elite_rows, "elite_fitness": island.elite_fitness} for island in self.islands]
        for index, island in enumerate(self.islands):
            state = migrated(states[index], states[index - 1])
            island.elite_rows, island.elite_fitness = state["elite_rows"], state["elite_fitness"]

    def _first_generation(self) -> list[np.ndarray]:
        """The first generation, island by island: the oscillator screen (``GenomeSpace.screen``: one rule, one
        direction each, the other genes of random genomes; as much of it as fits, in a random order), spread evenly
        over the islands, and random genomes in the rows left. A search that starts from random genomes alone finds
        a narrow edge only if one of them lands near it (docs/search.md); the screen puts a genome at every
        oscillator, period and level of a coarse grid, both ways. Island ``i`` of ``n`` starts at exit scale ``i``
        of ``n`` (``GenomeSpace.at_exit_scale``): its genomes' targets and stops from the ``i``-th slice of their
        ranges, tightest first, so that an island compares entries under exits of one scale and the islands together
        try every scale. Drawn from the search's own stream; each island then claims its part with its own."""
        total = sum(self.sizes)
        rng = self._rng(len(self.sizes))  # a stream no island has
        rows = self.space.random_population(total, rng)
        rules, directions = self.space.screen()
        chosen = rng.permutation(len(rules))[:total]
        for at, pick in zip(np.arange(chosen.size) * total // max(chosen.size, 1), chosen, strict=True):
            rows[at] = self.space.with_rules(rows[at], [rules[pick]], [])
            rows[at, L.DIRECTION] = directions[pick]
        islands = np.split(rows, np.cumsum(self.sizes)[:-1])
        return [self.space.at_exit_scale(part, scale, len(islands), rng) for scale, part in enumerate(islands)]

    # ---- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "generation": self.generation,
            "islands": [island.state() for island in self.islands],
            "best_row": None if self.best_row is None else self.best_row.copy(),
            "best_fitness": np.array([self.best_fitness]),
            "history": np.array(self.history, dtype=np.float64),
        }
