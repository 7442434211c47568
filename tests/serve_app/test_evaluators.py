"""Hot-reloaded evaluators on the running service: new versions without restarts, pinned per job."""

from __future__ import annotations

import time

import httpx
import pytest
import ray

from client import AuthError, ServiceError
from engine.evaluator import Evaluator, get_evaluator
from engine.miner import mine
from engine.settings import MinerSettings
from engine.synthetic import synthetic_candles
from serve_app.config import COORDINATOR_NAME, NAMESPACE

from .test_resilience import ingress_replicas, wait_for_generation

MOST_TRADES = '''"""Rank strategies by how often they trade (a scoring a test can predict)."""


def score(m):
    return m.trades
'''


def worker_pids() -> set[int]:
    coordinator = ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
    return {w["pid"] for w in ray.get(coordinator.worker_details.remote()) if w["ready"]}


def default_version(client) -> str:
    return next(e.version for e in client.evaluators() if e.default)


@pytest.fixture
def admin(service):
    with service.admin() as admin:
        yield admin
    service.deploy(default_evaluator="balanced")  # leave the default as the other tests expect it


def test_push_a_new_default_while_a_job_runs(service, client, admin):
    pids, replicas = worker_pids(), ingress_replicas()
    balanced = get_evaluator().version
    assert default_version(client) == balanced
    running = client.submit(dataset="synthetic", population=40, generations=10, seed=2)
    wait_for_generation(client, running.id, 1)

    started = time.perf_counter()
    pushed = admin.push_evaluator("most_trades", MOST_TRADES, make_default=True)
    push_s = time.perf_counter() - started
    assert pushed.default and pushed.version == Evaluator("most_trades", MOST_TRADES).version
    assert push_s < 10

    one_fold = {"folds": 1, "min_trades": 0, "permutations": 2}  # so the fitness is the training trade count
    new = client.submit(dataset="synthetic", population=12, generations=3, seed=6, **one_fold)
    assert client.wait(new.id).status == "finished"
    result = client.result(new.id)
    assert result.evaluator_version == pushed.version
    assert result.fitness == result.train.metrics["trades"]  # the ranking the new scoring predicts
    local = mine(synthetic_candles(), MinerSettings(population=12, generations=3, seed=6, **one_fold),
                 evaluator=Evaluator("most_trades", MOST_TRADES))
    assert result.genome == local.best_genome.model_dump(mode="json") and result.fitness == local.fitness

    assert client.wait(running.id).status == "finished"
    assert client.result(running.id).evaluator_version == balanced  # kept the version it started with
    # the spec says what was asked (the default: nothing), the job the version it was pinned to at submission
    assert (client.job(running.id).spec.evaluator, client.job(running.id).evaluator_version) == (None, balanced)
    named = client.submit(dataset="synthetic", population=6, generations=1, evaluator="most_trades")
    assert (client.job(named.id).spec.evaluator, client.job(named.id).evaluator_version) == (
        "most_trades", pushed.version)  # pinned while still queued
    assert client.wait(named.id).status == "finished"
    assert worker_pids() == pids and ingress_replicas() == replicas  # nothing restarted


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("def score(m)\n    return m.sharpe\n", "line 1: SyntaxError"),
        ("def score(m):\n    ratio = m.sharpe\n    raise RuntimeError('boom')\n", "line 3: RuntimeError: boom"),
        ("def score(m):\n    return m.return_pct / m.trades\n", "every fitness must be a finite number"),
        ("def score(m):\n    return m.sharpe[:3]\n", "expected (64,)"),
        ("import numpy as np\n\ndef score(m):\n    return np.zeros(len(m.trades)) + undefined\n",
         "line 4: NameError"),
    ],
)
def test_a_broken_evaluator_is_refused_and_the_default_still_serves(client, admin, source, words):
    before = default_version(client)
    with pytest.raises(ServiceError) as error:
        admin.push_evaluator("broken", source, make_default=True)
    assert error.value.status == 422 and words in error.value.message
    assert default_version(client) == before
    assert "broken" not in {e.name for e in client.evaluators()}
    job = client.submit(dataset="synthetic", population=6, generations=1)
    assert client.wait(job.id).status == "finished" and client.result(job.id).evaluator_version == before


def test_only_the_admin_token_may_push(service, client):
    with pytest.raises(AuthError) as error, service.client(admin_token=service.token) as user:
        user.push_evaluator("most_trades", MOST_TRADES)
    assert error.value.status == 403 and "admin token" in error.value.message
    anonymous = httpx.put(f"{service.url}/v1/evaluators/x", json={"source": MOST_TRADES})
    assert anonymous.status_code == 401


def test_the_config_path_changes_the_default_without_restarting_anything(service, client, admin):
    pids, replicas = worker_pids(), ingress_replicas()
    service.deploy(default_evaluator="calmar", default_evaluator_params={"drawdown_floor": 0.05})  # new user_config
    calmar = get_evaluator("calmar", drawdown_floor=0.05).version
    assert default_version(client) == calmar
    job = client.submit(dataset="synthetic", population=10, generations=2, seed=4)
    assert client.wait(job.id).status == "finished" and client.result(job.id).evaluator_version == calmar
    assert worker_pids() == pids and ingress_replicas() == replicas
    evaluators = {e.version: e for e in client.evaluators()}
    assert evaluators[calmar].params == {"drawdown_floor": 0.05}
