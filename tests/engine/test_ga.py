import json

import numpy as np
import pytest

from engine import layout as L
from engine.backtester import LocalBacktester, split_windows
from engine.evaluator import get_evaluator
from engine.ga import GeneticSearch
from engine.genome import decode
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


def test_elites_survive_and_best_is_tracked():
    search = GeneticSearch(MinerSettings(population=10, elite=2, seed=3))
    population = search.ask()
    fitness = np.linspace(0, 1, 10)
    search.tell(fitness)
    nxt = search.ask()
    np.testing.assert_array_equal(nxt[0], population[9])
    np.testing.assert_array_equal(nxt[1], population[8])
    assert search.best_fitness == 1.0 and search.history == [1.0]


def test_nan_fitness_ranks_last():
    search = GeneticSearch(MinerSettings(population=4, elite=1, seed=3))
    population = search.ask()
    search.tell(np.array([np.nan, -5.0, np.inf, -1.0]))
    np.testing.assert_array_equal(search.ask()[0], population[3])


def test_wrong_fitness_shape_is_rejected():
    search = GeneticSearch(MinerSettings(population=4, seed=3))
    with pytest.raises(ValueError, match="expected 4 fitness values"):
        search.tell(np.zeros(3))


def test_checkpoint_state_is_json_and_resumes_bit_for_bit():
    settings = MinerSettings(population=12, generations=6, seed=9)
    candles = synthetic_candles(2_000, seed=2)
    tester = LocalBacktester(candles, settings.costs)
    train, _ = split_windows(len(candles), 0.2)
    scorer = get_evaluator()

    def step(search):
        search.tell(scorer.fitness(tester.evaluate(search.ask(), train)))

    straight = GeneticSearch(settings)
    for _ in range(6):
        step(straight)
    first = GeneticSearch(settings)
    for _ in range(3):
        step(first)
    resumed = GeneticSearch(settings, state=json.loads(json.dumps(first.state())))
    for _ in range(3):
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
