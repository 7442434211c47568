"""One island of the genetic search, and its generations between two migrations run anywhere.

An island owns everything its breeding draws on: its random stream (seeded from the job's seed, the search's stream
and its index, never from another island's draws) and its memory of the genomes it asked for. So its generations
between two migrations depend on its state at the last one alone, and can run in this process or on a worker, one
generation per call or several (``run_epoch``): the service sends an island's whole epoch to one worker, which
backtests and breeds it there, instead of one call per worker and generation (docs/search.md).

**Every genome an island asks for is new to it.** A child equal to one the island asked for already (same canonical
key, ``engine.genome.genome_keys``) is mutated again, and after ``REDRAW_TRIES`` replaced by a random genome; its
elites keep their fitness instead of being backtested again. The memory is bounded (``ISLAND_SEEN_LIMIT`` keys, the
oldest generations forgotten whole) and rebuilt from the keys of the generations the island asked for, which the
caller keeps. Two islands may ask for the same genome in the same epoch (each backtests it); across the job that is
rare (docs/search.md measures it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine import layout as L
from engine.brief import fittest_distinct
from engine.evaluator import search_ranked
from engine.genome import genome_keys
from engine.settings import MinerSettings
from engine.space import GenomeSpace

MIGRATION_INTERVAL = 5  # generations between migrations: an epoch
STAGNATION_LIMIT = 8  # generations without a better island best before the island restarts
ISLAND_SEEN_LIMIT = 16_384  # genome keys an island remembers (128 KB; 131 generations of an island of 125)
REDRAW_TRIES = 8  # mutations of a duplicate child before it is replaced by a random genome


class SeenGenomes:
    """Keys of the genomes an island has asked for, one chunk per generation asked; past ``limit`` keys the oldest
    generations are forgotten whole. Every chunk holds keys new when claimed, so the live chunks never overlap and the
    memory rebuilds from them exactly (``chunks``, in generation order). The set of keys is made when first asked
    for: a coordinator only passes an island's chunks on."""

    def __init__(self, chunks: Sequence[np.ndarray] = (), limit: int = ISLAND_SEEN_LIMIT):
        self.limit = limit
        self.chunks: deque[np.ndarray] = deque(np.asarray(chunk, dtype=np.uint64) for chunk in chunks)
        self.size = sum(chunk.size for chunk in self.chunks)
        self._keys: set[int] | None = None
        self._open: list[int] = []
        self._forget_oldest()

    @property
    def keys(self) -> set[int]:
        if self._keys is None:  # the chunks hold distinct keys: a set of them all, in one pass
            self._keys = set(np.concatenate(self.chunks).tolist()) if self.chunks else set()
        return self._keys

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
        self._forget_oldest()

    def _forget_oldest(self) -> None:
        while self.size > self.limit and len(self.chunks) > 1:
            oldest = self.chunks.popleft()
            self.size -= oldest.size
            if self._keys is not None:
                self._keys.difference_update(oldest.tolist())


def island_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """Island ``index``'s own random stream for a search of ``seed`` (``stream`` > 0: a baseline's)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream, index))))


@dataclass
class Island:
    """One sub-population: the genomes of its current generation, its elites (best so far, fitness known), its random
    stream and its memory of genomes asked for."""

    rows: np.ndarray
    rng: np.random.Generator
    seen: SeenGenomes = field(default_factory=SeenGenomes)
    elite_rows: np.ndarray = field(default_factory=lambda: np.empty((0, L.GENOME_WIDTH)))
    elite_fitness: np.ndarray = field(default_factory=lambda: np.empty(0))
    best: float = -np.inf
    stale: int = 0  # generations since ``best`` last improved

    def state(self) -> dict:
        """Everything but the memory of keys (rebuilt from the generations asked for)."""
        return {"rows": self.rows.copy(), "elite_rows": self.elite_rows.copy(),
                "elite_fitness": self.elite_fitness.copy(), "best": np.array([self.best]), "stale": self.stale,
                "rng": self.rng.bit_generator.state}

    @classmethod
    def restore(cls, state: dict, seen: SeenGenomes, rng: np.random.Generator) -> Island:
        """An island from its ``state``; ``rng`` is its stream, set to the state's position."""
        rng.bit_generator.state = state["rng"]
        return cls(rows=_array(state["rows"], L.GENOME_WIDTH), rng=rng, seen=seen,
                   elite_rows=_array(state["elite_rows"], L.GENOME_WIDTH),
                   elite_fitness=_array(state["elite_fitness"]), best=float(_array(state["best"])[0]),
                   stale=int(state["stale"]))


def _array(value: np.ndarray, width: int | None = None) -> np.ndarray:
    array = np.array(value, dtype=np.float64)  # a copy: a state may be resumed from twice
    return array.reshape(-1, width) if width else array


class Breeder:
    """How an island turns a told generation into its next one: tournaments, crossover and mutation in its own
    pool (its elites and the generation), each child new to the island."""

    def __init__(self, settings: MinerSettings, elite: int):
        self.settings, self.elite = settings, elite
        self.space = GenomeSpace(settings.preset, settings.period_menu)

    def tell(self, island: Island, fitness: np.ndarray, breeds: bool) -> None:
        """Score a generation on its island (best, staleness, elites) and, if ``breeds``, breed its next one, or start
        the island again from random genomes if it stagnated."""
        if fitness.max() > island.best:
            island.best, island.stale = float(fitness.max()), 0
        else:
            island.stale += 1
        pool = np.concatenate([island.elite_rows, island.rows])
        pool_fitness = np.concatenate([island.elite_fitness, fitness])
        keep = np.argsort(-pool_fitness, kind="stable")[:self.elite]
        island.elite_rows, island.elite_fitness = pool[keep], pool_fitness[keep]
        if breeds:
            count = island.rows.shape[0]
            if island.stale >= STAGNATION_LIMIT:
                island.rows = self.fresh(island, count)
                island.elite_rows, island.elite_fitness = island.elite_rows[:0], island.elite_fitness[:0]
                island.best, island.stale = -np.inf, 0
            else:
                island.rows = self.breed(island, pool, pool_fitness, count)
        island.seen.seal()

    def breed(self, island: Island, pool: np.ndarray, fitness: np.ndarray, count: int) -> np.ndarray:
        """``count`` children of tournaments in an island's pool, each one new to the island."""
        s, rng = self.settings, island.rng
        parents = self._tournaments(fitness, 2 * count, rng).reshape(count, 2)
        crossing = rng.random(count) < s.crossover_rate
        return self.claim(island, self.space.breed(pool, parents, crossing, s.mutation_rate, rng))

    def fresh(self, island: Island, count: int) -> np.ndarray:
        return self.claim(island, self.space.random_population(count, island.rng))

    def claim(self, island: Island, rows: np.ndarray) -> np.ndarray:
        """``rows``, each one claimed as asked for by ``island``. A row it has asked for already (before, or earlier in
        ``rows``) is mutated again, up to ``REDRAW_TRIES`` times, then replaced by random genomes until it is new;
        each round claims in row order, so the outcome depends on the island's stream alone."""
        pending, rng, seen = np.arange(len(rows)), island.rng, island.seen
        for attempt in range(REDRAW_TRIES + 1):
            pending = pending[~seen.claim(genome_keys(rows[pending]))]
            if not pending.size:
                return rows
            if attempt < REDRAW_TRIES:
                rows[pending] = self.space.mutate(rows[pending], self.settings.mutation_rate, rng)
        while pending.size:
            rows[pending] = self.space.random_population(pending.size, rng)
            pending = pending[~seen.claim(genome_keys(rows[pending]))]
        return rows

    def _tournaments(self, fitness: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """Winners of ``count`` tournaments of ``tournament_size`` genomes drawn with replacement.

        Each winner is its tournament's fittest; a tie goes to the contender drawn first.
        """
        contenders = rng.integers(0, fitness.size, size=(count, self.settings.tournament_size))
        return contenders[np.arange(count), np.argmax(fitness[contenders], axis=1)]


class RandomBreeder(Breeder):
    """Random sampling as an island: every generation is a fresh random population (the random baseline)."""

    def breed(self, island: Island, pool: np.ndarray, fitness: np.ndarray, count: int) -> np.ndarray:
        return self.fresh(island, count)


def breeder_for(settings: MinerSettings, elite: int, random: bool) -> Breeder:
    return (RandomBreeder if random else Breeder)(settings, elite)


# ---- a told generation ------------------------------------------------------------------------------------------
@dataclass
class GenerationOutcome:
    """What the job keeps of one island's told generation: every genome's key and fitness (as the search ranks it),
    and the genome rows and fold metrics of its fittest distinct genomes (``kept``, ascending row indices; the first
    best always among them), the only ones that can be the generation's best or enter the hall of fame."""

    keys: np.ndarray  # (n,) uint64
    fitness: np.ndarray  # (n,)
    kept: np.ndarray  # (k,) row indices
    rows: np.ndarray  # (k, GENOME_WIDTH)
    metrics: np.ndarray | None  # (k, folds, metrics), None when the caller keeps no metrics

    @property
    def top(self) -> int:
        """Position in ``kept`` of the generation's first best genome."""
        return int(np.argmax(self.fitness[self.kept]))


def told(rows: np.ndarray, fitness: np.ndarray, metrics: np.ndarray | None, keep: int,
         floor: float = -np.inf) -> GenerationOutcome:
    """The outcome of a generation of ``rows`` with ranked ``fitness``: rows of its ``keep`` fittest distinct genomes,
    ranked as the search ranks (ties to the lower row), kept whole if not under ``floor`` (below it a genome can no
    longer enter the hall of fame); its best always."""
    keys = genome_keys(rows)
    kept = fittest_distinct(keys, fitness, max(keep, 1))
    kept = np.sort(kept[(fitness[kept] >= floor) | (kept == kept[0])])
    return GenerationOutcome(keys, fitness, kept, rows[kept].copy(), None if metrics is None else metrics[kept])


def step(island: Island, breeder: Breeder, fitness: np.ndarray, metrics: np.ndarray | None, keep: int,
         breeds: bool, floor: float = -np.inf) -> GenerationOutcome:
    """Tell an island its generation (``fitness`` as evaluated, ``metrics`` (n, folds, metrics) or None) and breed its
    next one; what the job keeps of the generation (``told``)."""
    fitness = search_ranked(np.asarray(fitness, dtype=np.float64))
    if fitness.shape != (island.rows.shape[0],):
        raise ValueError(f"expected {island.rows.shape[0]} fitness values, got shape {fitness.shape}")
    outcome = told(island.rows, fitness, metrics, keep, floor)
    breeder.tell(island, fitness, breeds)
    return outcome


# ---- an island's epoch ------------------------------------------------------------------------------------------
ScoreRows = Callable[[np.ndarray], tuple[np.ndarray | None, np.ndarray]]  # rows -> (fold metrics or None, fitness)


@dataclass
class IslandEpoch:
    """All a worker needs to run island ``index``'s generations [``start``, ``stop``): the search's settings, the
    island's state, its memory of keys (the chunks of the generations it remembers; None on the way to a worker that
    kept it from the island's last epoch, ``memory_after``) and the fitness under which a genome can no longer enter
    the job's hall of fame (``floor``: it keeps only the fitness of those)."""

    settings: MinerSettings
    random: bool  # the random baseline's island
    stream: int
    index: int
    elite: int
    state: dict
    seen: list[np.ndarray] | None
    start: int
    stop: int
    floor: float = -np.inf

    @property
    def genomes(self) -> int:
        return int(self.state["rows"].shape[0]) * (self.stop - self.start)

    @property
    def continues(self) -> bool:
        """Whether the island has an epoch after this one (this one is not the search's last)."""
        return self.stop < self.settings.generations


def wire_bytes(epoch: IslandEpoch, keep: int, folds: int) -> tuple[int, int]:
    """About how many bytes ``epoch`` takes to a worker (its state, its memory of keys if it carries it) and its
    outcome back (the state after it; each generation's keys, fitness, and ``keep`` genomes with their metrics on
    ``folds`` windows): what a caller packing several epochs into one call keeps under the size Ray sends inline."""
    state = sum(np.asarray(value).nbytes for name, value in epoch.state.items() if name != "rng") + 256
    seen = 0 if epoch.seen is None else sum(np.asarray(chunk).nbytes for chunk in epoch.seen)
    n = epoch.state["rows"].shape[0]
    per_generation = 512 + 16 * n + 8 * keep * (L.GENOME_WIDTH + folds * L.N_METRICS + 1)  # 512: pickling's own
    return state + seen, state + (epoch.stop - epoch.start) * per_generation


@dataclass
class EpochOutcome:
    index: int
    state: dict  # the island's state after its epoch, before migration
    generations: list[GenerationOutcome]


def run_epoch(epoch: IslandEpoch, evaluate: ScoreRows, keep: int) -> EpochOutcome:
    """Evaluate and breed one island's generations of an epoch; ``evaluate`` may raise to stop between them."""
    s = epoch.settings
    island = Island.restore(epoch.state, SeenGenomes(epoch.seen), island_rng(s.seed, epoch.stream, epoch.index))
    breeder = breeder_for(s, epoch.elite, epoch.random)
    outcomes = []
    for generation in range(epoch.start, epoch.stop):
        metrics, fitness = evaluate(island.rows)
        outcomes.append(step(island, breeder, fitness, metrics, keep, generation + 1 < s.generations, epoch.floor))
    return EpochOutcome(epoch.index, island.state(), outcomes)


def migrated(receiver: dict, sender: dict) -> dict:
    """A receiving island's state (``Island.state``) with the sender's best elite among its elites (unless it has it
    already), a parent there from the next generation on. The sender's own best, as the epoch left it (never one it
    received), so each island's migrant depends on that island alone. With ``elite`` 0 there is nothing to pass."""
    if not len(sender["elite_fitness"]):
        return receiver
    migrant = np.asarray(sender["elite_rows"][:1])
    if np.any(np.all(receiver["elite_rows"] == migrant, axis=1)):
        return receiver
    return {**receiver, "elite_rows": np.concatenate([receiver["elite_rows"], migrant]),
            "elite_fitness": np.concatenate([receiver["elite_fitness"], sender["elite_fitness"][:1]])}


def memory_after(seen: Sequence[np.ndarray], outcome: EpochOutcome, bred: bool) -> list[np.ndarray]:
    """An island's memory of keys (its chunks) for its next epoch: ``seen``, its chunks when the epoch started, with
    the epoch's generations, the genomes bred after the last one included if ``bred``. A worker that ran the epoch can
    keep it for the island's next one, which then travels without it."""
    chunks = [*seen, *(generation.keys for generation in outcome.generations[1:])]
    if bred:
        chunks.append(genome_keys(np.asarray(outcome.state["rows"]).reshape(-1, L.GENOME_WIDTH)))
    return list(SeenGenomes(chunks).chunks)


def after_epoch(seen: Sequence[np.ndarray], outcome: EpochOutcome, sender: EpochOutcome | None,
                bred: bool) -> tuple[dict, list[np.ndarray]]:
    """An island's state and memory of keys (``memory_after``) for its next epoch: its state after the epoch, with
    ``sender``'s best elite migrated in (None: no migration)."""
    state = outcome.state if sender is None else migrated(outcome.state, sender.state)
    return state, memory_after(seen, outcome, bred)
