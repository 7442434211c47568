"""A generation told from its batches' brief metrics is told exactly as from every metric (``engine.brief``)."""

import numpy as np
import pytest

from engine import layout as L
from engine.backtester import LocalBacktester
from engine.brief import BriefMetrics
from engine.miner import MiningSession
from engine.settings import MinerSettings
from engine.space import GenomeSpace
from engine.state_codec import pack
from engine.synthetic import synthetic_candles


def test_a_brief_keeps_the_fittest_distinct_genomes_whole():
    space = GenomeSpace(MinerSettings().preset, MinerSettings().period_menu)
    genomes = space.random_population(6, np.random.default_rng(0))
    genomes[3] = genomes[1]  # the same strategy twice in one batch
    metrics = np.random.default_rng(1).normal(size=(6, 2, L.N_METRICS))
    fitness = np.array([1.0, 5.0, np.nan, 5.0, 3.0, 4.0])

    brief = BriefMetrics.of(genomes, metrics, fitness, keep=2)
    assert brief.rows.tolist() == [1, 3, 5]  # two distinct genomes, the twin of the first included; NaN ranks last
    out = np.empty_like(metrics)
    brief.fill(out)
    np.testing.assert_array_equal(out[[1, 3, 5]], metrics[[1, 3, 5]])
    assert np.isnan(out[[0, 2, 4]]).all()
    assert BriefMetrics.of(genomes, metrics, fitness, keep=10).rows.tolist() == [1, 3, 5, 4, 0, 2]
    assert BriefMetrics.of(genomes, metrics, np.full(6, -np.inf), keep=1).rows.tolist() == [0]  # ties: lower row


def mined(settings: MinerSettings, batch: int, keep: int | None) -> tuple[list, list[bytes]]:
    """Every generation's event and the state after it of a session told whole metrics (``keep`` None) or, batch
    by batch of ``batch`` genomes, what their briefs keep."""
    candles = synthetic_candles(3_000, seed=8)
    session = MiningSession(len(candles), candles.fingerprint, settings)
    tester = LocalBacktester(candles, settings.costs)
    events, states = [], []
    while not session.done:
        rows = session.population()
        metrics = tester.evaluate_windows(rows, session.folds)
        fitness = session.fitness(metrics)
        if keep is not None:
            told = np.empty_like(metrics)
            for lo in range(0, len(rows), batch):
                part = slice(lo, lo + batch)
                BriefMetrics.of(rows[part], metrics[part], fitness[part], keep).fill(told[part])
            metrics = told
        events.append(session.tell_generation(metrics, fitness))
        states.append(pack(session.state()))
    return events, states


@pytest.mark.parametrize("batch", [7, 60])
def test_a_search_told_briefs_keeping_the_hall_of_fames_size_is_told_as_one_told_everything(batch):
    settings = MinerSettings(population=60, generations=6, islands=2, hall_of_fame=5, seed=3, min_trades=1)
    whole_events, whole_states = mined(settings, batch, keep=None)
    brief_events, brief_states = mined(settings, batch, keep=MiningSession(3_000, "", settings).metrics_kept)
    assert brief_events == whole_events
    assert brief_states == whole_states  # hall of fame (with its fold metrics), trial log and search alike
