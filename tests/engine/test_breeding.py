"""The compiled genome space (engine/breeding.py): draws decided by the job's generator alone, the documented
proportions, comparable operands only, and children made of their parents' genes."""

import numpy as np
import pytest

from engine import breeding as B
from engine import layout as L
from engine.genome import decode, genome_keys
from engine.settings import RISK_PRESETS, MinerSettings, RiskLevel
from engine.space import GenomeSpace

SPACE = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], MinerSettings().period_menu)
# (left kind, right kind) of every family: prices and averages with averages, oscillators with constants, volume
# with its average, ATR with ATR
COMPARABLE = ({(left, right) for left in (L.CLOSE, L.SMA, L.EMA) for right in (L.SMA, L.EMA)}
              | {(int(kind), L.CONSTANT) for kind in B.OSCILLATORS[:, 0]} | {(L.VOLUME, L.VOLUME_SMA), (L.ATR, L.ATR)})


def rules_of(rows):
    for row in rows:
        for offset, count in ((L.ENTRY_OFFSET, row[L.N_ENTRY]), (L.EXIT_OFFSET, row[L.N_EXIT])):
            yield from SPACE.rules(row, offset, int(count))


def test_the_job_generator_decides_every_draw():
    def generation(seed):
        rng = np.random.default_rng(seed)
        population = SPACE.random_population(200, rng)
        parents = rng.integers(0, 200, size=(300, 2))
        return population, SPACE.breed(population, parents, rng.random(300) < 0.7, 0.3, rng)

    first, again, other = generation(1), generation(1), generation(2)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(first[1], other[1])


def test_random_genomes_have_the_documented_proportions():
    rows = SPACE.random_population(20_000, np.random.default_rng(3))
    entry_share = np.bincount(rows[:, L.N_ENTRY].astype(int), minlength=5)[1:] / len(rows)
    assert np.allclose(entry_share, np.diff(B.ENTRY_RULES_CUMULATIVE, prepend=0.0), atol=0.015)
    for column, share in ((L.STOP_LOSS, B.P_STOP), (L.TAKE_PROFIT, B.P_TARGET), (L.TRAILING_STOP, B.P_TRAIL)):
        assert abs(np.mean(rows[:, column] > 0) - share) < 0.015
    assert abs(np.mean(rows[:, L.DIRECTION] == L.SHORT) - 0.5) < 0.015
    rules = np.array(list(rules_of(rows[:2_000])))
    assert {(int(r[L.R_LEFT_KIND]), int(r[L.R_RIGHT_KIND])) for r in rules} == COMPARABLE
    assert np.all(rules[rules[:, L.R_LEFT_KIND] == L.CLOSE, L.R_LEFT_PERIOD] == 0)
    two_averages = (rules[:, L.R_LEFT_PERIOD] > 0) & (rules[:, L.R_RIGHT_PERIOD] > 0)
    assert np.all(rules[two_averages, L.R_LEFT_PERIOD] != rules[two_averages, L.R_RIGHT_PERIOD])
    assert len(np.unique(genome_keys(rows))) > 0.99 * len(rows)


@pytest.mark.parametrize("risk", list(RiskLevel))
def test_fresh_exits_are_log_uniform_between_the_bounds(risk):
    """A random genome's stop, target and trail: their logarithm uniform between the bounds' (a quarter of them
    below the bounds' geometric quarter point), never outside; at HIGH half of the targets are under 3.9 %."""
    preset = RISK_PRESETS[risk]
    rows = GenomeSpace(preset, MinerSettings().period_menu).random_population(20_000, np.random.default_rng(4))
    for column, bounds in ((L.STOP_LOSS, preset.stop_loss), (L.TAKE_PROFIT, preset.take_profit),
                           (L.TRAILING_STOP, preset.trailing_stop)):
        values = rows[rows[:, column] > 0, column]
        assert bounds.low <= values.min() and values.max() <= bounds.high
        where = np.log(values / bounds.low) / np.log(bounds.high / bounds.low)  # 0 at the low bound, 1 at the high
        assert np.allclose(np.quantile(where, [0.25, 0.5, 0.75]), [0.25, 0.5, 0.75], atol=0.02)
    if risk == RiskLevel.HIGH:
        assert abs(np.median(rows[rows[:, L.TAKE_PROFIT] > 0, L.TAKE_PROFIT]) - np.sqrt(0.01 * 0.15)) < 0.002


def bred(risk: RiskLevel, seed: int, parents: int, children: int) -> tuple[GenomeSpace, np.ndarray, np.ndarray]:
    """``parents`` random genomes of ``risk`` and ``children`` bred from them, half crossed, mutation rate 0.9."""
    space = GenomeSpace(RISK_PRESETS[risk], MinerSettings().period_menu)
    rng = np.random.default_rng(seed)
    mothers = space.random_population(parents, rng)
    pairs = rng.integers(0, parents, size=(children, 2))
    return space, mothers, space.breed(mothers, pairs, rng.random(children) < 0.5, 0.9, rng)


@pytest.mark.parametrize("risk", list(RiskLevel))
def test_children_stay_valid_keep_their_rules_comparable_and_unused_slots_zero(risk):
    _, _, children = bred(risk, 4, 300, 2_000)
    for child in children:
        decode(child)  # every bound of the preset
        for offset, count, slots in ((L.ENTRY_OFFSET, child[L.N_ENTRY], L.MAX_ENTRY_RULES),
                                     (L.EXIT_OFFSET, child[L.N_EXIT], L.MAX_EXIT_RULES)):
            assert not child[offset + int(count) * L.RULE_WIDTH: offset + slots * L.RULE_WIDTH].any()
    assert {(int(r[L.R_LEFT_KIND]), int(r[L.R_RIGHT_KIND])) for r in rules_of(children)} <= COMPARABLE


@pytest.mark.parametrize("risk", list(RiskLevel))
def test_every_low_risk_strategy_has_a_stop_loss_and_the_others_may_go_without(risk):
    space, parents, children = bred(risk, 6, 2_000, 4_000)
    mutants = space.mutate(children, 0.9, np.random.default_rng(7))
    for rows in (parents, children, mutants):
        assert np.all(rows[:, L.STOP_LOSS] > 0) if risk is RiskLevel.LOW else np.mean(rows[:, L.STOP_LOSS] == 0) > 0.1


def test_without_mutation_a_child_is_its_mother_or_made_of_its_parents_genes():
    rng = np.random.default_rng(5)
    parents = SPACE.random_population(50, rng)
    pairs = rng.integers(0, 50, size=(400, 2))
    crossing = rng.random(400) < 0.5
    children = SPACE.breed(parents, pairs, crossing, 0.0, rng)
    assert np.array_equal(children[~crossing], parents[pairs[~crossing, 0]])
    for child, (mother, father) in zip(children[crossing], pairs[crossing], strict=True):
        a, b = parents[mother], parents[father]
        for column in range(L.DIRECTION, L.HEADER_WIDTH):
            assert child[column] in (a[column], b[column])
        for offset, count in ((L.ENTRY_OFFSET, L.N_ENTRY), (L.EXIT_OFFSET, L.N_EXIT)):
            pool = [r.tobytes() for r in SPACE.rules(a, offset, int(a[count])) + SPACE.rules(b, offset, int(b[count]))]
            mine = [r.tobytes() for r in SPACE.rules(child, offset, int(child[count]))]
            assert min(a[count], b[count]) <= len(mine) <= max(a[count], b[count], 1)
            remaining = iter(pool)
            assert all(rule in remaining for rule in mine)  # a sub-sequence of the pooled rules: parent order kept


def test_mutation_moves_periods_along_the_menu_and_keeps_constants_in_range():
    rng = np.random.default_rng(6)
    rows = SPACE.random_population(3_000, rng)
    mutated = SPACE.breed(rows, np.repeat(np.arange(3_000)[:, None], 2, axis=1), np.zeros(3_000, bool), 1.0, rng)
    assert np.mean(np.any(mutated != rows, axis=1)) > 0.99
    menu = set(MinerSettings().period_menu) | {0}
    constants = {int(kind): (low, high) for kind, low, high, _ in B.OSCILLATORS}
    for rule in rules_of(mutated):
        assert rule[L.R_LEFT_PERIOD] in menu and rule[L.R_RIGHT_PERIOD] in menu
        if rule[L.R_RIGHT_KIND] == L.CONSTANT:
            low, high = constants[int(rule[L.R_LEFT_KIND])]
            assert low <= rule[L.R_CONSTANT] <= high
