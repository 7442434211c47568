"""Ask/tell island-model genetic search over encoded genomes.

The search does not know where genomes are evaluated: ``ask()`` returns the generation's genomes, ``tell(fitness)``
takes one fitness per row (by row index, never by completion order) and breeds the next generation. Its state is
small and JSON-able, so a job can be checkpointed after any generation and resumed bit-for-bit. ``tell_island``
tells one island at a time, in order, and breeds its next generation at once: the same genomes as ``tell``, sent
to the workers while the other islands are still being evaluated.

**Islands** (D. Whitley, S. Rana, R. Heckendorn, "The island model genetic algorithm: on separability, population
size and convergence", 1999): the population is split into ``islands`` sub-populations that breed apart and pass
their best genome along a ring every ``MIGRATION_INTERVAL`` generations. One population converges on the first
decent strategy it meets; several explore several. An island whose best has not improved for
``STAGNATION_LIMIT`` generations starts again from random genomes (the job's best is kept). The number of islands
is a job setting, never the cluster's shape, so the result is the same on one laptop or two.

**Every genome asked for is new.** A child equal to a genome the search already asked for (same canonical key,
``engine.genome.genome_keys``) is mutated again, and after ``REDRAW_TRIES`` replaced by a random genome: the
budget, population x generations, is spent on distinct strategies, and elites keep their fitness instead of being
backtested again. The memory of keys is bounded (``SEEN_LIMIT``, oldest generations forgotten first). It is not in
the state, which would then grow with every generation, but rebuilt from the keys of the populations asked for,
which the caller keeps: one array per generation, appended once (``asked``).
"""

from __future__ import annotations

import base64
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine import layout as L
from engine.evaluator import search_ranked
from engine.genome import genome_keys
from engine.settings import MinerSettings
from engine.space import GenomeSpace

MIGRATION_INTERVAL = 5  # generations between migrations
STAGNATION_LIMIT = 8  # generations without a better island best before the island restarts
MIN_ISLAND_SIZE = 8  # a population smaller than islands x this runs fewer islands
SEEN_LIMIT = 500_000  # genome keys remembered for duplicate elimination (4 MB as the checkpoint's bytes)
REDRAW_TRIES = 8  # mutations of a duplicate child before it is replaced by a random genome


def island_sizes(population: int, islands: int) -> list[int]:
    """Genomes per island: as equal as possible, at least ``MIN_ISLAND_SIZE`` each (so fewer islands if needed)."""
    count = max(1, min(islands, population // MIN_ISLAND_SIZE))
    base, extra = divmod(population, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def _array(value: np.ndarray | str, width: int | None = None) -> np.ndarray:
    """A float64 array of a state: as stored, or as base64 text (checkpoints written before ``engine.state_codec``)."""
    array = (np.frombuffer(base64.b64decode(value), dtype=np.float64).copy() if isinstance(value, str)
             else np.array(value, dtype=np.float64))  # a copy: a state may be resumed from twice
    return array.reshape(-1, width) if width else array


class SeenGenomes:
    """Keys of the genomes a search has asked for, one chunk per generation asked; past ``limit`` keys the oldest
    generations are forgotten whole. So the memory is the keys of the populations asked for, and rebuilds from them
    exactly (``chunks``, in generation order): the checkpoint need not carry it."""

    def __init__(self, chunks: Sequence[np.ndarray] = (), limit: int = SEEN_LIMIT):
        self.limit = limit
        self.chunks: deque[np.ndarray] = deque()
        self.keys: set[int] = set()
        self.size = 0
        self._open: list[int] = []
        for chunk in chunks:
            self.claim(chunk)
            self.seal()

    def __contains__(self, key: int) -> bool:
        return key in self.keys

    def claim(self, keys: np.ndarray) -> np.ndarray:
        """Remember ``keys`` in order; True where a key was new (a key repeated within ``keys`` is new once)."""
        known, opened = self.keys, self._open
        new = []
        for key in keys.tolist():
            fresh = key not in known
            if fresh:
                known.add(key)
                opened.append(key)
            new.append(fresh)
        return np.array(new, dtype=bool)

    def seal(self) -> None:
        """The keys claimed since the last seal are one generation's; forget the oldest generations past ``limit``
        (never the newest)."""
        if self._open:
            self.chunks.append(np.array(self._open, dtype=np.uint64))
            self.size += len(self._open)
            self._open = []
        while self.size > self.limit and len(self.chunks) > 1:
            oldest = self.chunks.popleft()
            self.size -= oldest.size
            self.keys.difference_update(oldest.tolist())


@dataclass
class Island:
    """One sub-population: the genomes of its current generation and its elites (best so far, fitness known)."""

    rows: np.ndarray
    elite_rows: np.ndarray = field(default_factory=lambda: np.empty((0, L.GENOME_WIDTH)))
    elite_fitness: np.ndarray = field(default_factory=lambda: np.empty(0))
    best: float = -np.inf
    stale: int = 0  # generations since ``best`` last improved

    def state(self) -> dict:
        return {"rows": self.rows.copy(), "elite_rows": self.elite_rows.copy(),
                "elite_fitness": self.elite_fitness.copy(), "best": np.array([self.best]), "stale": self.stale}

    @classmethod
    def restore(cls, state: dict) -> Island:
        return cls(rows=_array(state["rows"], L.GENOME_WIDTH), elite_rows=_array(state["elite_rows"], L.GENOME_WIDTH),
                   elite_fitness=_array(state["elite_fitness"]), best=float(_array(state["best"])[0]),
                   stale=int(state["stale"]))


class GeneticSearch:
    """``stream`` > 0 draws from an independent random stream of the same seed (used by baselines). A search resumes
    from ``state`` and ``asked``: the keys of the populations it asked for and was told about, one array per
    generation in order (``genome_keys`` of each; kept by the caller, so that the checkpoint stays small)."""

    def __init__(self, settings: MinerSettings, *, state: dict | None = None, stream: int = 0,
                 asked: Sequence[np.ndarray] = ()):
        self.settings = settings
        self.space = GenomeSpace(settings.preset, settings.period_menu)
        seed = settings.seed if stream == 0 else np.random.SeedSequence([settings.seed, stream])
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.sizes = island_sizes(settings.population, settings.islands)
        self.elite = min(settings.elite, min(self.sizes) - 1)
        self._told = 0  # islands of the current generation told so far (``tell_island``)
        if state is None:
            self.generation = 0
            self.seen = SeenGenomes()
            self.best_row: np.ndarray | None = None
            self.best_fitness = -np.inf
            self.history: list[float] = []
            self.islands = [Island(rows) for rows in self._first_generation()]
            self.seen.seal()
        else:
            self._restore(state)
            if len(asked) != self.generation:
                raise ValueError(f"a search at generation {self.generation} needs the asked keys of as many "
                                 f"generations to resume, got {len(asked)}")
            bred = [] if self.done else [genome_keys(self.ask())]  # asked for, not yet told about
            self.seen = SeenGenomes([*asked, *bred])

    @property
    def done(self) -> bool:
        return self.generation >= self.settings.generations

    def ask(self) -> np.ndarray:
        """The current generation's genomes, one encoded row each, island after island (a copy). Between
        generations only: an island already told holds its next generation."""
        return np.concatenate([island.rows for island in self.islands])

    @property
    def island_bounds(self) -> list[tuple[int, int]]:
        """Each island's rows in ``ask()``'s population, as (start, stop)."""
        edges = np.cumsum([0, *self.sizes]).tolist()
        return list(itertools.pairwise(edges))

    def island_rows(self, index: int) -> np.ndarray:
        """Island ``index``'s genomes to evaluate: right after it was told, its next generation's (a copy)."""
        return self.islands[index].rows.copy()

    def tell(self, fitness: np.ndarray) -> None:
        """Score the current generation and breed the next one."""
        fitness = np.asarray(fitness, dtype=np.float64)
        if fitness.shape != (sum(self.sizes),):
            raise ValueError(f"expected {sum(self.sizes)} fitness values, got shape {fitness.shape}")
        for index, (lo, hi) in enumerate(self.island_bounds):
            self.tell_island(index, fitness[lo:hi])

    def tell_island(self, index: int, fitness: np.ndarray) -> None:
        """Score one island's part of the current generation and breed that island's next generation at once, so
        its genomes can be evaluated while the other islands' still are.

        Islands are told in order, each generation's before the next one's. The outcome is ``tell``'s exactly: an
        island's breeding draws on the random stream and the memory of genomes asked for after the islands before
        it, as in ``tell``; migration, which needs every island scored, runs when the last island is told and only
        changes the elites scored with the next generation."""
        told = self._told
        if index != told:
            raise ValueError(f"islands are told in order: expected island {told}, got {index}")
        island = self.islands[index]
        fitness = np.asarray(fitness, dtype=np.float64)
        if fitness.shape != (island.rows.shape[0],):
            raise ValueError(f"expected {island.rows.shape[0]} fitness values for island {index}, "
                             f"got shape {fitness.shape}")
        fitness = search_ranked(fitness)
        top = int(np.argmax(fitness))  # the first of equals, island after island: the generation's first best
        if self.best_row is None or fitness[top] > self.best_fitness:
            self.best_row, self.best_fitness = island.rows[top].copy(), float(fitness[top])
        pool, pool_fitness = self._score(island, fitness)
        if self.generation + 1 < self.settings.generations:  # the last generation breeds nothing
            if island.stale >= STAGNATION_LIMIT:
                self.islands[index] = Island(self._fresh(island.rows.shape[0]))
            else:
                island.rows = self._breed(pool, pool_fitness, island.rows.shape[0])
        self._told = told + 1
        if self._told < len(self.islands):
            return
        self._told = 0
        self.history.append(self.best_fitness)
        self.generation += 1
        if self.done:
            return
        if len(self.islands) > 1 and self.generation % MIGRATION_INTERVAL == 0:
            self._migrate()
        self.seen.seal()

    def _score(self, island: Island, fitness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Record a generation on its island (best, staleness, elites); return the breeding pool: the elites it
        had and the generation, with their fitness."""
        if fitness.max() > island.best:
            island.best, island.stale = float(fitness.max()), 0
        else:
            island.stale += 1
        pool = np.concatenate([island.elite_rows, island.rows])
        pool_fitness = np.concatenate([island.elite_fitness, fitness])
        keep = np.argsort(-pool_fitness, kind="stable")[:self.elite]
        island.elite_rows, island.elite_fitness = pool[keep], pool_fitness[keep]
        return pool, pool_fitness

    def _migrate(self) -> None:
        """Each island's best elite joins the next island's elites (a ring; unless it has it already), to be a
        parent there from the next generation on. With ``elite`` 0 there is nothing to pass."""
        for sender, receiver in zip(self.islands, self.islands[1:] + self.islands[:1], strict=True):
            if not sender.elite_fitness.size:
                continue
            migrant = sender.elite_rows[:1]
            if np.any(np.all(receiver.elite_rows == migrant, axis=1)):
                continue
            receiver.elite_rows = np.concatenate([receiver.elite_rows, migrant])
            receiver.elite_fitness = np.concatenate([receiver.elite_fitness, sender.elite_fitness[:1]])

    def _breed(self, pool: np.ndarray, fitness: np.ndarray, count: int) -> np.ndarray:
        """``count`` children of tournaments in an island's pool, each one new to the search."""
        s, rng = self.settings, self.rng
        parents = self._tournaments(fitness, 2 * count).reshape(count, 2)
        crossing = rng.random(count) < s.crossover_rate
        return self._claim(self.space.breed(pool, parents, crossing, s.mutation_rate, rng))

    def _first_generation(self) -> list[np.ndarray]:
        """The first generation, island by island: the oscillator screen (``GenomeSpace.screen``: one rule, one
        direction each, the risk genes of random genomes; as much of it as fits, in a random order), spread evenly
        over the islands, and random genomes in the rows left. A search that starts from random genomes alone finds
        a narrow edge only if one of them lands near it (docs/search.md); the screen puts a genome at every
        oscillator, period and level of a coarse grid, both ways."""
        total = sum(self.sizes)
        rows = self.space.random_population(total, self.rng)
        rules, directions = self.space.screen()
        chosen = self.rng.permutation(len(rules))[:total]
        for at, pick in zip(np.arange(chosen.size) * total // max(chosen.size, 1), chosen, strict=True):
            rows[at] = self.space.with_rules(rows[at], [rules[pick]], [])
            rows[at, L.DIRECTION] = directions[pick]
        return np.split(self._claim(rows), np.cumsum(self.sizes)[:-1])

    def _fresh(self, count: int) -> np.ndarray:
        return self._claim(self.space.random_population(count, self.rng))

    def _claim(self, rows: np.ndarray) -> np.ndarray:
        """``rows``, each one claimed as asked for. A row the search has asked for already (before, or earlier in
        ``rows``) is mutated again, up to ``REDRAW_TRIES`` times, then replaced by random genomes until it is new;
        each round claims in row order, so the outcome depends on the generator alone."""
        pending = np.arange(len(rows))
        for attempt in range(REDRAW_TRIES + 1):
            pending = pending[~self.seen.claim(genome_keys(rows[pending]))]
            if not pending.size:
                return rows
            if attempt < REDRAW_TRIES:
                rows[pending] = self.space.mutate(rows[pending], self.settings.mutation_rate, self.rng)
        while pending.size:
            rows[pending] = self.space.random_population(pending.size, self.rng)
            pending = pending[~self.seen.claim(genome_keys(rows[pending]))]
        return rows

    def _tournaments(self, fitness: np.ndarray, count: int) -> np.ndarray:
        """Winners of ``count`` tournaments of ``tournament_size`` genomes drawn with replacement.

        Each winner is its tournament's fittest; a tie goes to the contender drawn first.
        """
        contenders = self.rng.integers(0, fitness.size, size=(count, self.settings.tournament_size))
        return contenders[np.arange(count), np.argmax(fitness[contenders], axis=1)]

    # ---- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict:
        if self._told:
            raise RuntimeError("a search's state is taken between generations, not while its islands are told")
        return {
            "generation": self.generation,
            "islands": [island.state() for island in self.islands],
            "best_row": None if self.best_row is None else self.best_row.copy(),
            "best_fitness": np.array([self.best_fitness]),
            "history": np.array(self.history, dtype=np.float64),
            "rng": self.rng.bit_generator.state,
        }

    def _restore(self, state: dict) -> None:
        self.generation = int(state["generation"])
        self.islands = [Island.restore(island) for island in state["islands"]]
        self.best_row = None if state["best_row"] is None else _array(state["best_row"])
        self.best_fitness = float(_array(state["best_fitness"])[0])
        self.history = _array(state["history"]).tolist()
        self.rng.bit_generator.state = state["rng"]
