import json

import numpy as np
import pytest

from engine import state_codec
from engine.cli import main
from engine.genome import Genome, decode, encode, genome_keys
from engine.hall_of_fame import HallOfFame
from engine.layout import N_METRICS
from engine.miner import mine
from engine.settings import MinerSettings
from engine.space import GenomeSpace
from engine.synthetic import synthetic_candles

SETTINGS = MinerSettings()


@pytest.fixture(scope="module")
def candles():
    return synthetic_candles(4_000, seed=3)


def genomes(count: int, seed: int = 0) -> np.ndarray:
    """``count`` distinct random strategies (a random draw can repeat one)."""
    space, rng = GenomeSpace(SETTINGS.preset, SETTINGS.period_menu), np.random.default_rng(seed)
    rows: dict[int, np.ndarray] = {}
    while len(rows) < count:
        row = space.random_genome(rng)
        rows.setdefault(int(genome_keys(row)[0]), row)
    return np.stack(list(rows.values()))


def tell(hall: HallOfFame, population: np.ndarray, fitness: list[float], generation: int = 0) -> None:
    hall.add(population, np.array(fitness), np.zeros((len(population), 2, N_METRICS)), generation)


def fitness_of(hall: HallOfFame) -> list[float]:
    return [famed.fitness for famed in hall.entries]


def with_two_entry_rules(row: np.ndarray) -> Genome:
    genome = decode(row)
    return genome.model_copy(update={"entry": [genome.entry[0], genome.entry[0].model_copy(update={"op": "<"})]})


def test_the_same_strategy_enters_once_whatever_its_encoding():
    rows = genomes(3)
    genome = with_two_entry_rules(rows[0])
    swapped = genome.model_copy(update={"entry": genome.entry[::-1]})
    population = np.stack([encode(genome), encode(swapped), rows[1], encode(genome), rows[2]])
    assert not np.array_equal(population[0], population[1])  # same strategy, rules in another order
    hall = HallOfFame(10)
    tell(hall, population, [2.0, 2.0, 1.0, 2.0, 0.5])
    assert fitness_of(hall) == [2.0, 1.0, 0.5]
    assert np.array_equal(hall.best.row, population[0])  # of equals, the row told first
    tell(hall, population, [2.0, 2.0, 1.0, 2.0, 0.5], generation=1)  # told again: nothing new
    assert fitness_of(hall) == [2.0, 1.0, 0.5] and {f.generation for f in hall.entries} == {0}


def test_best_first_at_most_n_and_ties_keep_the_one_found_first():
    rows = genomes(12)
    hall = HallOfFame(4)
    tell(hall, rows[:6], [0.1, 0.5, 0.3, -np.inf, 0.5, np.nan])
    assert fitness_of(hall) == [0.5, 0.5, 0.3, 0.1]  # not scorable: never entered
    assert np.array_equal(hall.entries[0].row, rows[1]) and np.array_equal(hall.entries[1].row, rows[4])
    tell(hall, rows[6:], [0.5, 0.2, 0.9, 0.0, 0.0, 0.0], generation=1)
    assert fitness_of(hall) == [0.9, 0.5, 0.5, 0.5]
    assert [f.generation for f in hall.entries] == [1, 0, 0, 1]  # the tie from generation 1 ranks after


def test_the_state_packs_to_bytes_and_restores_the_same_entries():
    rows = genomes(5)
    hall = HallOfFame(3)
    hall.add(rows, np.array([0.3, -0.0, 0.7, 0.1, 0.2]), np.random.default_rng(1).random((5, 2, N_METRICS)), 4)
    restored = HallOfFame(3, state_codec.unpack(state_codec.pack(hall.state())))
    assert state_codec.pack(restored.state()) == state_codec.pack(hall.state())
    for a, b in zip(restored.entries, hall.entries, strict=True):
        assert np.array_equal(a.row, b.row) and np.array_equal(a.fold_metrics, b.fold_metrics) and a.key == b.key


def test_a_job_s_hall_is_its_best_distinct_strategies_with_holdout_shown(candles):
    settings = MinerSettings(population=24, generations=4, seed=5, hall_of_fame=7, permutations=0)
    result = mine(candles, settings)
    hall = result.hall_of_fame
    assert len(hall) == 7
    assert [e.fitness for e in hall] == sorted((e.fitness for e in hall), reverse=True)
    assert len({int(genome_keys(encode(e.genome))[0]) for e in hall}) == 7
    best = hall[0]
    assert (best.genome, best.fitness) == (result.best_genome, result.fitness)
    assert (best.train_metrics, best.holdout_metrics) == (result.train_metrics, result.holdout_metrics)
    assert all(e.strategy == e.genome.describe() and e.holdout_metrics for e in hall)
    # the validation searches (random baseline, shuffled copies) never enter it
    validated = mine(candles, settings.model_copy(update={"permutations": 2}))
    assert validated.hall_of_fame == hall


def test_a_resumed_or_cancelled_job_keeps_the_same_hall(candles):
    settings = MinerSettings(population=12, generations=12, seed=8, hall_of_fame=5, permutations=1)
    straight = mine(candles, settings)
    checkpoints = []  # one an epoch
    cancelled = mine(candles, settings, on_checkpoint=checkpoints.append, should_stop=lambda: len(checkpoints) >= 2)
    assert cancelled.cancelled and cancelled.generations_run == 10
    assert cancelled.validation.verdict == "not_validated" and cancelled.hall_of_fame
    assert (cancelled.hall_of_fame[0].genome, cancelled.hall_of_fame[0].fitness) == (cancelled.best_genome,
                                                                                     cancelled.fitness)
    resumed = mine(candles, settings, resume_state=checkpoints[1])
    assert resumed.hall_of_fame == straight.hall_of_fame


def test_the_local_cli_lists_the_top_strategies(tmp_path, capsys):
    out = tmp_path / "best.json"
    assert main(["--population", "16", "--generations", "2", "--permutations", "0", "--hall-of-fame", "5",
                 "--top", "3", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    listed = text[text.index("hall of fame, ranked on training fitness:"):].splitlines()[2:5]
    assert [line.split()[0] for line in listed] == ["1", "2", "3"] and "result written to" in text
    saved = json.loads(out.read_text())["hall_of_fame"]
    assert len(saved) == 5 and listed[0].endswith(saved[0]["strategy"])
