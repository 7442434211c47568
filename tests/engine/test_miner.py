import numpy as np
import pytest

from engine import events as ev
from engine.backtester import LocalBacktester, split_windows
from engine.evaluator import BalancedEvaluator, Evaluator, get_evaluator
from engine.genome import encode
from engine.miner import mine
from engine.settings import MinerSettings
from engine.synthetic import synthetic_candles


@pytest.fixture(scope="module")
def candles():
    return synthetic_candles(4_000, seed=3)


def test_same_seed_same_result_whatever_the_batch_size(candles):
    settings = MinerSettings(population=24, generations=4, seed=5, batch_size=24)
    a = mine(candles, settings)
    b = mine(candles, settings.model_copy(update={"batch_size": 5}))
    c = mine(candles, settings.model_copy(update={"batch_size": 1}))
    assert a.best_genome == b.best_genome == c.best_genome
    assert a.history == b.history == c.history
    assert a.train_metrics == b.train_metrics and a.holdout_metrics == b.holdout_metrics
    d = mine(candles, settings.model_copy(update={"seed": 6}))
    assert d.history != a.history


def test_result_reports_train_and_holdout_and_provenance(candles):
    settings = MinerSettings(population=10, generations=2, seed=1, holdout_fraction=0.25)
    result = mine(candles, settings)
    assert (result.train_bars, result.holdout_bars) == (3_000, 1_000)
    assert result.data_fingerprint == candles.fingerprint
    assert result.evaluator_version == BalancedEvaluator().version
    assert result.seed == 1 and result.generations_run == 2 and not result.cancelled
    tester = LocalBacktester(candles, settings.costs)
    train, holdout = split_windows(len(candles), 0.25)
    row = encode(result.best_genome)[None, :]
    assert result.train_metrics["net_pnl"] == tester.evaluate(row, train)[0, 0]
    assert result.holdout_metrics["net_pnl"] == tester.evaluate(row, holdout)[0, 0]
    assert result.fitness == pytest.approx(BalancedEvaluator().fitness(tester.evaluate(row, train))[0])


def test_no_holdout(candles):
    result = mine(candles, MinerSettings(population=6, generations=1, holdout_fraction=0.0))
    assert result.holdout_metrics is None and result.train_bars == len(candles)


def test_events_in_order_with_batch_counts(candles):
    seen = []
    mine(candles, MinerSettings(population=10, generations=2, batch_size=4), on_event=seen.append)
    kinds = [e.type for e in seen]
    assert kinds == ["job_started",
                     "generation_started", "batch_evaluated", "batch_evaluated", "batch_evaluated", "generation_best",
                     "generation_started", "batch_evaluated", "batch_evaluated", "batch_evaluated", "generation_best",
                     "finished"]
    assert [e.evaluated for e in seen if isinstance(e, ev.BatchEvaluated)][:3] == [4, 8, 10]
    best = [e for e in seen if isinstance(e, ev.GenerationBest)]
    assert best[1].best_fitness_so_far >= best[0].best_fitness_so_far


def test_cancellation_between_batches(candles):
    seen = []
    batches = []

    def should_stop():
        return len(batches) >= 3

    result = mine(candles, MinerSettings(population=10, generations=5, batch_size=4),
                  on_event=lambda e: (seen.append(e), isinstance(e, ev.BatchEvaluated) and batches.append(e)),
                  should_stop=should_stop)
    assert result.cancelled and result.generations_run == 1
    assert isinstance(seen[-1], ev.Cancelled) and seen[-1].generation == 1
    assert result.best_genome is not None


def test_resume_from_checkpoint_equals_straight_run(candles):
    settings = MinerSettings(population=12, generations=5, seed=8)
    straight = mine(candles, settings)
    checkpoints = []
    mine(candles, settings.model_copy(update={"generations": 5}), on_checkpoint=checkpoints.append,
         should_stop=lambda: len(checkpoints) >= 2)
    resumed = mine(candles, settings, resume_state=checkpoints[1])
    assert resumed.best_genome == straight.best_genome and resumed.history == straight.history


def test_too_few_candles_is_a_clear_error():
    with pytest.raises(ValueError, match="too few for a 20% holdout"):
        mine(synthetic_candles(150, seed=1), MinerSettings(population=4, generations=1))


def test_custom_evaluator_changes_the_ranking(candles):
    class MostTrades(Evaluator):
        name = "most_trades"

        def score(self, metrics):
            return metrics[:, 2]

    result = mine(candles, MinerSettings(population=16, generations=2, seed=2), evaluator=MostTrades())
    assert result.evaluator_version.startswith("most_trades@")
    assert result.fitness == result.train_metrics["trades"]


def test_evaluator_shape_and_lookup_errors():
    class Broken(Evaluator):
        name = "broken"

        def score(self, metrics):
            return np.zeros(3)

    with pytest.raises(ValueError, match="returned shape"):
        Broken().fitness(np.zeros((2, 9)))
    with pytest.raises(ValueError, match="known evaluators: balanced"):
        get_evaluator("sharp")


def test_evaluator_version_depends_on_params():
    assert BalancedEvaluator().version != BalancedEvaluator(min_trades=5).version
    assert BalancedEvaluator().version == BalancedEvaluator().version


def test_threaded_backtester_gives_the_single_threaded_answer(candles):
    from engine.backtester import ThreadedBacktester

    settings = MinerSettings(population=30, generations=3, seed=4)
    threaded = ThreadedBacktester(candles, settings.costs, threads=3)
    try:
        assert mine(candles, settings, backtester=threaded).model_dump() == mine(candles, settings).model_dump()
    finally:
        threaded.close()
