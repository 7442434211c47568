import asyncio
import dataclasses
import itertools
import pickle
import re
import signal

import numpy as np
import pytest

from engine import events as ev
from engine.backtester import LocalBacktester, split_windows
from engine.driver import drive_generations, run_blocking
from engine.evaluator import Evaluator, EvaluatorError, get_evaluator
from engine.genome import decode, encode
from engine.islands import run_epoch
from engine.layout import N_METRICS
from engine.miner import DataChanged, MiningSession, evaluate_folds, mine
from engine.scoring import fold_windows, job_fitness
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
    assert result.evaluator_version == get_evaluator().version
    assert result.seed == 1 and result.generations_run == 2 and not result.cancelled
    tester = LocalBacktester(candles, settings.costs)
    train, holdout = split_windows(len(candles), 0.25)
    row = encode(result.best_genome)[None, :]
    assert result.train_metrics["net_pnl"] == tester.evaluate(row, train)[0, 0]
    assert result.holdout_metrics["net_pnl"] == tester.evaluate(row, holdout)[0, 0]
    folds = fold_windows(train, settings.folds)
    per_fold = np.stack([tester.evaluate(row, w) for w in folds], axis=1)
    assert result.fitness == job_fitness(get_evaluator(), per_fold, settings.min_trades)[0]
    assert [f.metrics["net_pnl"] for f in result.folds] == list(per_fold[0, :, 0])
    assert result.profitable_folds == int((per_fold[0, :, 0] > 0).sum())


def test_no_holdout(candles):
    result = mine(candles, MinerSettings(population=6, generations=1, holdout_fraction=0.0))
    assert result.holdout_metrics is None and result.train_bars == len(candles)


def test_events_in_order_with_island_counts(candles):
    seen = []
    mine(candles, MinerSettings(population=24, generations=7, islands=3, batch_size=4, permutations=2),
         on_event=seen.append)
    kinds = [e.type for e in seen]
    # an epoch (the generations up to a migration) at a time: its first generation's islands as they finish it,
    # then every generation's best; in this process the next epoch's islands ran meanwhile, all told at once
    epoch = ["generation_best", *["generation_started", "generation_best"] * 4]
    islands = ["generation_started", *["batch_evaluated"] * 3]
    assert kinds == ["job_started", *islands, *epoch, "generation_started", "batch_evaluated", "generation_best",
                     "generation_started", "generation_best", "validation_started",
                     *["validation_search_finished"] * 3, "finished"]
    assert [(e.kind, e.index, e.done, e.total) for e in seen if isinstance(e, ev.ValidationSearchFinished)] == [
        ("random", 0, 1, 3), ("shuffled", 1, 2, 3), ("shuffled", 2, 3, 3)]
    assert [(e.generation, e.evaluated, e.total) for e in seen if isinstance(e, ev.BatchEvaluated)] == [
        (0, 8, 24), (0, 16, 24), (0, 24, 24), (5, 24, 24)]
    best = [e for e in seen if isinstance(e, ev.GenerationBest)]
    assert [e.generation for e in best] == list(range(7))
    # each generation's best so far is the job's after that generation, not after the epoch it was told in
    assert [e.best_fitness_so_far for e in best] == list(itertools.accumulate((e.fitness for e in best), max))


def test_cancellation_between_batches_drops_the_epoch_under_way(candles):
    seen = []
    polls = []

    def should_stop():  # polled before every batch and between epochs
        polls.append(any(isinstance(e, ev.GenerationBest) for e in seen))
        return sum(polls) > 3  # after the first epoch is told, while the third runs

    result = mine(candles, MinerSettings(population=10, generations=12, batch_size=4),
                  on_event=seen.append, should_stop=should_stop)
    told = [e.generation for e in seen if isinstance(e, ev.GenerationBest)]
    assert result.cancelled and result.generations_run == 10 == len(told)  # two epochs, whole; not the third
    assert isinstance(seen[-1], ev.Cancelled) and seen[-1].generation == 10
    assert result.best_genome is not None


def test_mine_runs_where_an_event_loop_already_runs_with_the_same_result(candles):
    settings = MinerSettings(population=10, generations=2, seed=4, permutations=1)

    async def in_a_notebook():
        return mine(candles, settings)

    assert asyncio.run(in_a_notebook()).model_dump() == mine(candles, settings).model_dump()


def test_ctrl_c_stops_mining_at_once_not_after_the_generation(candles):
    batches = []

    def press_ctrl_c_at_the_second_batch():
        if len(batches) == 1:
            signal.raise_signal(signal.SIGINT)  # as a terminal would: Python's own handler, if nothing replaced it
        return False

    with pytest.raises(KeyboardInterrupt):
        mine(candles, MinerSettings(population=40, generations=3, batch_size=4),
             on_event=lambda e: isinstance(e, ev.BatchEvaluated) and batches.append(e),
             should_stop=press_ctrl_c_at_the_second_batch)
    assert len(batches) == 1  # no batch after the key: asyncio.run's handler would have let the generation finish
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_from_checkpoint_equals_straight_run(candles):
    settings = MinerSettings(population=12, generations=12, seed=8)
    straight = mine(candles, settings)
    checkpoints = []  # one an epoch: after generations 5 and 10
    mine(candles, settings, on_checkpoint=checkpoints.append, should_stop=lambda: len(checkpoints) >= 2)
    resumed = mine(candles, settings, resume_state=checkpoints[1])
    assert resumed.best_genome == straight.best_genome and resumed.history == straight.history


def test_a_checkpoint_resumes_only_on_the_candles_it_started_on(candles):
    settings = MinerSettings(population=12, generations=3, seed=8, permutations=0)
    checkpoints = []
    mine(candles, settings, on_checkpoint=checkpoints.append, should_stop=lambda: len(checkpoints) >= 1)
    grown = synthetic_candles(len(candles) + 500)  # the file appended to while the service was down
    with pytest.raises(DataChanged, match=f"fingerprint {candles.fingerprint} then, {grown.fingerprint} now"):
        mine(grown, settings, resume_state=checkpoints[0])
    assert mine(candles, settings, resume_state=checkpoints[0]).best_genome == mine(candles, settings).best_genome


def test_islands_run_apart_and_answered_in_any_order_mine_the_in_process_result(candles):
    # the service's way: every island's epoch is sent at once, each answers when it is done, in any order
    settings = MinerSettings(population=40, generations=12, islands=4, seed=8, permutations=0)
    seen = []
    expected = mine(candles, settings, on_event=seen.append)
    session = MiningSession(len(candles), candles.fingerprint, settings)
    tester = LocalBacktester(candles, settings.costs)
    delays = iter(np.random.default_rng(0).uniform(0, 0.004, size=1_000))

    class IslandsApart:
        def __init__(self):
            self.bests, self.sent, self.answered, self.ahead = [], [], [], []

        async def evolve(self, epoch):
            self.sent.append(epoch.start)
            await asyncio.sleep(next(delays))
            # without the hall's floor: every kept genome's metrics come back, and the hall is the same
            outcome = run_epoch(dataclasses.replace(pickle.loads(pickle.dumps(epoch)), floor=-np.inf), lambda rows: (
                metrics := evaluate_folds(tester, rows, session.folds, 7, lambda: False, lambda *_: None),
                job_fitness(session.evaluator, metrics, settings.min_trades)), session.metrics_kept)
            self.answered.append(epoch.index)
            return pickle.loads(pickle.dumps(outcome))

        def announce(self, generation):
            pass

        def islands_done(self, generation, evaluated):
            pass

        async def record(self, bests, evaluated):
            self.bests += bests
            await asyncio.sleep(0.003)  # a commit: the next epoch's islands are evaluated meanwhile
            self.ahead.append(self.sent.count(bests[-1].generation + 1))

        def stopping(self):
            return False

    hooks = IslandsApart()
    run_blocking(drive_generations(session, hooks))
    assert hooks.bests == [e for e in seen if isinstance(e, ev.GenerationBest)]
    assert session.search.history == expected.history
    assert decode(session.search.best_row) == expected.best_genome
    assert [(decode(famed.row), famed.fitness, famed.generation) for famed in session.hall.entries] == [
        (entry.genome, entry.fitness, entry.generation) for entry in expected.hall_of_fame]
    assert hooks.sent == [0] * 4 + [5] * 4 + [10] * 4  # every island's epoch at once
    assert hooks.answered != sorted(hooks.answered)  # not in island order
    assert hooks.ahead == [4, 4, 0]  # every island's next epoch was out before the commit


def test_too_few_candles_is_a_clear_error():
    with pytest.raises(ValueError, match="too few for a 20% holdout"):
        mine(synthetic_candles(150, seed=1), MinerSettings(population=4, generations=1))


def test_custom_evaluator_changes_the_ranking(candles):
    most_trades = Evaluator("most_trades", "def score(m):\n    return m.trades\n")
    result = mine(candles, MinerSettings(population=16, generations=2, seed=2, folds=1, min_trades=0),
                  evaluator=most_trades)
    assert result.evaluator_version.startswith("most_trades@")
    assert result.fitness == result.train_metrics["trades"]


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("def score(m):\n    return m.sharpe +\n", "<evaluator e>, line 2: SyntaxError"),
        ("def score(m):\n    x = 1\n    return m.sharpe / undefined\n", "line 3: NameError"),
        ("def score(m):\n    return m.sharpe[:1]\n", "expected (3,)"),
        ("def score(m):\n    return m.calmar\n", "no metric 'calmar'"),
        ("x = 1\n", "defines no score"),
        ("PARAMS = 3\ndef score(m):\n    return m.sharpe\n", "PARAMS must be a dict"),
    ],
)
def test_broken_evaluators_say_where_and_why(source, words):
    with pytest.raises(EvaluatorError, match=re.escape(words)):
        Evaluator("e", source).fitness(np.zeros((3, N_METRICS)))


def test_nan_scores_rank_last_but_fail_the_strict_check():
    nan = Evaluator("nan", "import numpy as np\ndef score(m):\n    return m.sharpe / m.trades\n")
    assert np.isneginf(nan.fitness(np.zeros((2, N_METRICS)))).all()
    with pytest.raises(EvaluatorError, match="every fitness must be a finite number"):
        nan.check(np.zeros((2, N_METRICS)))


@pytest.mark.parametrize("name", ["balanced", "sharpe", "calmar", "pnl_drawdown"])
def test_builtins_score_real_metrics(candles, name):
    tester = LocalBacktester(candles, MinerSettings().costs)
    from engine.settings import RISK_PRESETS, RiskLevel
    from engine.space import GenomeSpace

    space = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], (5, 20, 50))
    rng = np.random.default_rng(0)
    metrics = tester.evaluate(space.random_population(40, rng), split_windows(4000, 0.2)[0])
    get_evaluator(name).check(metrics)


def test_evaluator_versions_and_parameters():
    assert get_evaluator().version != get_evaluator(drawdown_limit=0.3).version
    assert get_evaluator().version == get_evaluator().version
    assert get_evaluator().version.startswith("balanced@")
    with pytest.raises(EvaluatorError, match=r"unknown parameter.*drawdown_limit, drawdown_penalty"):
        get_evaluator(mintrades=5)
    with pytest.raises(EvaluatorError, match="built-in evaluators: balanced, calmar, pnl_drawdown, sharpe"):
        get_evaluator("sharp")
def test_threaded_backtester_gives_the_single_threaded_answer(candles):
    settings = MinerSettings(population=30, generations=3, seed=4)
    assert mine(candles, settings, threads=3).model_dump() == mine(candles, settings).model_dump()
