
import pickle

import numpy as np
import pytest

from engine import layout as L
from engine import state_codec
from engine.backtester import LocalBacktester, split_windows
from engine.baselines import RandomSearch
from engine.evaluator import get_evaluator
from engine.ga import GeneticSearch, island_sizes
from engine.genome import decode, genome_keys
from engine.islands import MIGRATION_INTERVAL, STAGNATION_LIMIT, SeenGenomes, run_epoch
from engine.settings import RISK_PRESETS, MinerSettings, RiskLevel
from engine.space import GenomeSpace
from engine.synthetic import synthetic_candles


@pytest.mark.parametrize("risk", list(RiskLevel))
def test_random_and_bred_genomes_are_valid_and_inside_the_preset(risk):
    settings = MinerSettings(population=30, generations=3, risk=risk, seed=4, mutation_rate=0.6)
    search = GeneticSearch(settings)
    preset = RISK_PRESETS[risk]
    rng = np.random.default_rng(0)
    for _ in range(3):
        population = search.ask()
        for row in population:
            genome = decode(row)  # validates every bound
            assert genome.stop_loss == 0.0 or preset.stop_loss.low <= genome.stop_loss <= preset.stop_loss.high
            assert preset.leverage.low <= genome.leverage <= preset.leverage.high
            assert preset.size.low <= genome.size <= preset.size.high
            assert all(r.right.period in settings.period_menu for r in genome.entry
                       if hasattr(r.right, "period"))
        search.tell(rng.normal(size=len(population)))


def test_same_seed_same_populations_different_seed_different():
    a, b = GeneticSearch(MinerSettings(seed=1)), GeneticSearch(MinerSettings(seed=1))
    c = GeneticSearch(MinerSettings(seed=2))
    np.testing.assert_array_equal(a.ask(), b.ask())
    assert not np.array_equal(a.ask(), c.ask())
    fitness = np.arange(a.ask().shape[0], dtype=float)
    a.tell(fitness)
    b.tell(fitness)
    np.testing.assert_array_equal(a.ask(), b.ask())


def test_every_genome_an_island_asks_for_is_new_to_it_so_the_budget_buys_distinct_strategies():
    settings = MinerSettings(population=40, generations=15, islands=2, seed=5, mutation_rate=0.05,
                             crossover_rate=0.1)
    search = GeneticSearch(settings)
    asked = []
    while not search.done:
        population = search.ask()
        asked.append(population)
        # flat fitness with one stand-out per island: they converge and clones of it are bred again and again
        fitness = np.zeros(len(population))
        fitness[[0, 20]] = 1.0
        search.tell(fitness)
    for lo, hi in search.island_bounds:
        keys = genome_keys(np.concatenate([rows[lo:hi] for rows in asked]))
        assert keys.size == (hi - lo) * settings.generations == np.unique(keys).size
    everyone = genome_keys(np.concatenate(asked))
    # two islands seldom ask for the same genome: a migrant's children in one island and its lineage in the other,
    # at this low mutation rate 3-10 of the 600 (seeds 0-19)
    assert np.unique(everyone).size >= 0.98 * everyone.size


def test_elites_keep_their_fitness_and_are_never_asked_for_again():
    search = GeneticSearch(MinerSettings(population=10, elite=2, islands=1, seed=3))
    population = search.ask()
    search.tell(np.linspace(0, 1, 10))
    (island,) = search.islands
    np.testing.assert_array_equal(island.elite_rows, population[[9, 8]])
    np.testing.assert_array_equal(island.elite_fitness, [1.0, 8 / 9])
    assert not set(genome_keys(search.ask()).tolist()) & set(genome_keys(population).tolist())
    search.tell(np.full(10, 0.5))  # a worse generation: the elites and the job's best stay
    np.testing.assert_array_equal(island.elite_rows[0], population[9])
    np.testing.assert_array_equal(search.best_row, population[9])
    assert search.history == [1.0, 1.0]


def test_nan_fitness_ranks_last():
    search = GeneticSearch(MinerSettings(population=4, elite=1, seed=3))
    population = search.ask()
    search.tell(np.array([np.nan, -5.0, np.inf, -1.0]))
    np.testing.assert_array_equal(search.best_row, population[3])
    np.testing.assert_array_equal(search.islands[0].elite_rows[0], population[3])


@pytest.mark.parametrize(("population", "islands", "sizes"), [
    (100, 4, [25, 25, 25, 25]), (30, 4, [10, 10, 10]), (20, 4, [10, 10]), (4, 4, [4]), (50, 1, [50]), (33, 2, [17, 16]),
])
def test_islands_split_the_population_with_at_least_eight_genomes_each(population, islands, sizes):
    assert island_sizes(population, islands) == sizes
    assert GeneticSearch(MinerSettings(population=population, islands=islands)).ask().shape[0] == population


def test_islands_pass_their_best_along_a_ring_every_few_generations():
    search = GeneticSearch(MinerSettings(population=24, islands=3, generations=20, seed=2))
    rng = np.random.default_rng(0)
    for _ in range(MIGRATION_INTERVAL - 1):
        search.tell(rng.normal(size=24))
    population = search.ask()
    fitness = rng.normal(size=24)
    fitness[3] = 50.0  # the best genome of island 0 (rows 0-7)
    search.tell(fitness)
    assert search.generation == MIGRATION_INTERVAL
    receiver = search.islands[1]
    assert np.any(np.all(receiver.elite_rows == population[3], axis=1))
    assert 50.0 in receiver.elite_fitness


def test_a_stagnant_island_restarts_from_random_genomes_and_the_job_keeps_its_best():
    search = GeneticSearch(MinerSettings(population=16, islands=2, generations=30, seed=4))
    first = search.ask()
    search.tell(np.arange(16.0))
    for _ in range(STAGNATION_LIMIT):
        search.tell(np.full(16, -1.0))  # no island improves
    assert all(island.stale == 0 and island.best == -np.inf and island.elite_rows.size == 0
               for island in search.islands)
    np.testing.assert_array_equal(search.best_row, first[15])
    assert search.best_fitness == 15.0


def test_seen_genomes_forget_the_oldest_generations_whole_and_rebuild_from_their_keys():
    seen = SeenGenomes(limit=4)
    generations = [np.array([1, 2], np.uint64), np.array([3, 4], np.uint64), np.array([5, 6], np.uint64)]
    for keys in generations:
        assert seen.claim(keys).all()
        seen.seal()
    assert seen.keys == {3, 4, 5, 6}
    assert seen.claim(np.array([4, 1, 1], np.uint64)).tolist() == [False, True, False]  # 1 was forgotten: new, once
    seen.seal()
    generations.append(np.array([1], np.uint64))
    assert seen.keys == {5, 6, 1}  # 3 and 4 went as one generation: never half of one
    rebuilt = SeenGenomes(generations, limit=4)
    assert rebuilt.keys == seen.keys and [c.tolist() for c in rebuilt.chunks] == [c.tolist() for c in seen.chunks]


def test_the_genome_key_ignores_rule_order_and_the_sign_of_zero():
    space = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], (5, 10, 20))
    rng = np.random.default_rng(3)
    row = space.with_rules(space.random_genome(rng), [space.random_rule(rng) for _ in range(3)], [])
    row[L.TRAILING_STOP] = 0.0
    swapped = space.with_rules(row, space.rules(row, L.ENTRY_OFFSET, 3)[::-1], [])
    negative_zero = row.copy()
    negative_zero[L.TRAILING_STOP] = -0.0
    keys = genome_keys(np.stack([row, swapped, negative_zero]))
    assert keys[0] == keys[1] == keys[2]
    other = row.copy()
    other[L.SIZE] = np.nextafter(row[L.SIZE], 2.0)
    assert genome_keys(other[None, :])[0] != keys[0]


def _reference_key(row: np.ndarray) -> int:
    """The genome key as documented, in Python integers: stored checkpoints hold these keys, so they may not change."""
    mask = (1 << 64) - 1

    def mix(x: int) -> int:
        x ^= x >> 30
        x = (x * 0xBF58476D1CE4E5B9) & mask
        x ^= x >> 27
        x = (x * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    def chain(words) -> int:
        h = 0x9E3779B97F4A7C15
        for word in words:
            h = mix(h ^ int(word))
        return h

    words = (row + 0.0).view(np.uint64)
    sums = []
    for offset, count in ((L.ENTRY_OFFSET, int(row[L.N_ENTRY])), (L.EXIT_OFFSET, int(row[L.N_EXIT]))):
        sums.append(sum(chain(words[offset + r * L.RULE_WIDTH:offset + (r + 1) * L.RULE_WIDTH])
                        for r in range(count)) & mask)
    return chain([*words[:L.HEADER_WIDTH], *sums])


def test_genome_keys_are_the_documented_hash_whatever_lies_in_unused_rule_slots():
    space = GenomeSpace(RISK_PRESETS[RiskLevel.HIGH], (5, 10, 20))
    rows = space.random_population(300, np.random.default_rng(8))
    unused = np.random.default_rng(9).normal(size=rows.shape)
    for row, junk in zip(rows, unused, strict=True):  # garbage beyond the used rules changes nothing
        row[L.ENTRY_OFFSET + int(row[L.N_ENTRY]) * L.RULE_WIDTH:L.EXIT_OFFSET] = \
            junk[L.ENTRY_OFFSET + int(row[L.N_ENTRY]) * L.RULE_WIDTH:L.EXIT_OFFSET]
    assert genome_keys(rows).tolist() == [_reference_key(row) for row in rows]


def test_wrong_fitness_shape_is_rejected():
    search = GeneticSearch(MinerSettings(population=4, seed=3))
    with pytest.raises(ValueError, match="expected 4 fitness values"):
        search.tell(np.zeros(3))


def key_fitness(rows: np.ndarray) -> np.ndarray:
    """A fitness that depends on the genome alone (so an island can be scored wherever it runs): flat steps with
    -inf holes, for ties, migrations and stagnation restarts."""
    keys = genome_keys(rows)
    fitness = np.round((keys % np.uint64(1000)).astype(float) / 250.0, 0)
    fitness[keys % np.uint64(5) == 0] = -np.inf
    return fitness


@pytest.mark.parametrize("search_class", [GeneticSearch, RandomSearch])
@pytest.mark.parametrize(("population", "islands"), [(60, 4), (57, 3), (20, 1)])
def test_islands_run_an_epoch_anywhere_and_breed_what_the_whole_generation_breeds(search_class, population, islands):
    # 23 generations: migrations, stagnation restarts, a short last epoch and the last generation that breeds nothing
    settings = MinerSettings(population=population, generations=23, islands=islands, seed=5)
    whole, by_epoch = search_class(settings), search_class(settings)
    while not by_epoch.done:
        stop = by_epoch.epoch_stop
        # each island's epoch as a worker gets it: pickled, run alone, the outcome pickled back
        epochs = [pickle.loads(pickle.dumps(by_epoch.island_epoch(i))) for i in range(len(by_epoch.islands))]
        outcomes = [pickle.loads(pickle.dumps(run_epoch(epoch, lambda rows: (None, key_fitness(rows)), 0)))
                    for epoch in reversed(epochs)][::-1]  # in any order
        # each island's next epoch, made from its own outcome and its ring sender's before the others are told
        ahead = [by_epoch.next_island_epoch(epochs[i], outcomes[i], outcomes[i - 1]) for i in range(len(epochs))]
        told = by_epoch.tell_epoch(outcomes)
        assert len(told) == stop - whole.generation
        if by_epoch.done:
            assert ahead == [None] * len(epochs)
        else:
            for index, epoch in enumerate(ahead):
                expected = by_epoch.island_epoch(index)
                assert (epoch.start, epoch.stop) == (expected.start, expected.stop)
                assert state_codec.pack([epoch.state, epoch.seen]) == state_codec.pack([expected.state, expected.seen])
        for generation in told:
            expected = whole.tell(key_fitness(whole.ask()))
            assert [o.keys.tolist() for o in generation] == [o.keys.tolist() for o in expected]
        assert by_epoch.generation == whole.generation and by_epoch.history == whole.history
        np.testing.assert_array_equal(by_epoch.ask(), whole.ask())
        assert state_codec.pack(by_epoch.state()) == state_codec.pack(whole.state())
        assert all([set(c.tolist()) for c in a.seen.chunks] == [set(c.tolist()) for c in b.seen.chunks]
                   for a, b in zip(by_epoch.islands, whole.islands, strict=True))  # the same memory of keys
    np.testing.assert_array_equal(by_epoch.best_row, whole.best_row)


def test_an_epoch_is_told_whole_in_island_order():
    search = GeneticSearch(MinerSettings(population=32, islands=4, generations=12, seed=3))
    outcomes = [run_epoch(search.island_epoch(i), lambda rows: (None, key_fitness(rows)), 0) for i in range(4)]
    assert all(len(outcome.generations) == MIGRATION_INTERVAL for outcome in outcomes)
    with pytest.raises(ValueError, match="one outcome per island in order"):
        search.tell_epoch(outcomes[::-1])
    with pytest.raises(ValueError, match="one outcome per island in order"):
        search.tell_epoch(outcomes[:3])
    search.tell(key_fitness(search.ask()))  # a generation told meanwhile: the outcomes are stale
    with pytest.raises(ValueError, match="generations 1 to 4"):
        search.tell_epoch(outcomes)


def test_checkpoint_state_is_json_and_resumes_bit_for_bit():
    # two islands, a migration at generation 5 and, with fitness this flat, restarts: all of it must resume
    settings = MinerSettings(population=16, generations=14, islands=2, seed=9)
    candles = synthetic_candles(2_000, seed=2)
    tester = LocalBacktester(candles, settings.costs)
    train, _ = split_windows(len(candles), 0.2)
    scorer = get_evaluator()

    asked = []

    def step(search):
        asked.append(genome_keys(search.ask()))
        search.tell(scorer.fitness(tester.evaluate(search.ask(), train)))

    straight = GeneticSearch(settings)
    for _ in range(14):
        step(straight)
    asked.clear()
    first = GeneticSearch(settings)
    for _ in range(7):
        step(first)
    resumed = GeneticSearch(settings, state=state_codec.unpack(state_codec.pack(first.state())), asked=asked)
    assert [island.seen.keys for island in resumed.islands] == [island.seen.keys for island in first.islands]
    with pytest.raises(ValueError, match="asked keys of as many generations"):
        GeneticSearch(settings, state=first.state(), asked=asked[:-1])
    for _ in range(7):
        step(resumed)
    np.testing.assert_array_equal(resumed.best_row, straight.best_row)
    assert resumed.history == straight.history and resumed.done


def test_mutation_changes_genomes_and_respects_rule_counts():
    space = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], (5, 10, 20))
    rng = np.random.default_rng(1)
    rows = [space.random_genome(rng) for _ in range(50)]
    mutated = [space.mutate(r, 1.0, rng) for r in rows]
    assert sum(not np.array_equal(a, b) for a, b in zip(rows, mutated, strict=True)) == 50
    for row in mutated:
        assert 1 <= row[L.N_ENTRY] <= L.MAX_ENTRY_RULES and 0 <= row[L.N_EXIT] <= L.MAX_EXIT_RULES
        decode(row)
    children = [space.crossover(rows[i], rows[i + 1], rng) for i in range(49)]
    for child in children:
        decode(child)


@pytest.mark.parametrize("risk", list(RiskLevel))
def test_each_island_starts_at_its_own_exit_scale(risk):
    """Island i of n: every genome of its first generation has a target and a stop, each in the i-th of n equal
    slices of its log range, tightest first; the random baseline keeps random genomes' exits, some of them off."""
    settings = MinerSettings(population=600, generations=2, risk=risk, seed=5)
    search = GeneticSearch(settings)
    rows, count = search.ask(), len(search.sizes)
    for scale, (lo, hi) in enumerate(search.island_bounds):
        for column, bounds in ((L.STOP_LOSS, settings.preset.stop_loss), (L.TAKE_PROFIT, settings.preset.take_profit)):
            where = np.log(rows[lo:hi, column] / bounds.low) / np.log(bounds.high / bounds.low)
            assert np.all((scale / count - 1e-9 <= where) & (where <= (scale + 1) / count + 1e-9))
            assert where.max() - where.min() > 0.5 / count  # drawn across the slice, not at one point
    for row in rows:
        decode(row)
    baseline = RandomSearch(settings).ask()
    assert 0.5 < np.mean(baseline[:, L.TAKE_PROFIT] > 0) < 0.9
    where = np.log(baseline[baseline[:, L.TAKE_PROFIT] > 0, L.TAKE_PROFIT] / settings.preset.take_profit.low)
    assert where.min() < 0.1 * where.max()  # the baseline's targets span the whole range, tight ones included


def screened_rules(rows: np.ndarray) -> list[tuple]:
    """The entry rule and direction of each one-rule genome without exit rules, as a tuple."""
    one = rows[(rows[:, L.N_ENTRY] == 1) & (rows[:, L.N_EXIT] == 0)]
    return [(*rule, direction) for rule, direction in
            zip(one[:, L.ENTRY_OFFSET:L.ENTRY_OFFSET + L.RULE_WIDTH], one[:, L.DIRECTION], strict=True)]


def test_the_first_generation_screens_every_oscillator_rule_both_ways_once_spread_over_the_islands():
    settings = MinerSettings(population=1200, generations=2, risk="MEDIUM", seed=8)
    search = GeneticSearch(settings)
    rules, directions = search.space.screen()
    screen = {(*rule, direction) for rule, direction in zip(rules, directions, strict=True)}
    assert len(screen) == 900  # 4 oscillators (25 levels in all) x 9 periods x above / below x long / short
    per_island = [sum(rule in screen for rule in screened_rules(search.ask()[lo:hi]))
                  for lo, hi in search.island_bounds]
    # 112 or 113 of each island's 150 rows, give or take a random genome that happens to be a one-rule
    # ``macd_hist > 0`` (the MACD histogram is compared with 0 in any rule)
    assert len(screen) <= sum(per_island) <= len(screen) + 4 and max(per_island) - min(per_island) <= 2
    assert set(screened_rules(search.ask())) >= screen
    for row in search.ask():
        decode(row)  # a screened genome is a valid one
    # the random baseline stays random: none of its genomes lands on the grid's levels (the MACD histogram is
    # compared with 0 in any rule)
    levels = {rule for rule in screen if rule[L.R_LEFT_KIND] != L.MACD_HIST}
    assert not levels & set(screened_rules(RandomSearch(settings).ask()))
    # a small population screens a random part of the grid, every genome of it
    small = GeneticSearch(settings.model_copy(update={"population": 90}))
    assert len(screen & set(screened_rules(small.ask()))) == 90
