"""Jobs outlive redeploys, coordinator crashes and lost workers, and still give the in-process result."""

from __future__ import annotations

import os
import signal
import time

import ray

from engine.miner import mine
from engine.settings import MinerSettings
from engine.synthetic import synthetic_candles
from serve_app.config import COORDINATOR_NAME, NAMESPACE

SPEC = {"dataset": "synthetic", "population": 60, "generations": 12, "seed": 21, "risk": "HIGH",
        "evaluator": "balanced"}


def expected():
    return mine(synthetic_candles(), MinerSettings(population=60, generations=12, seed=21, risk="HIGH"))


def wait_for_generation(client, job_id, generation):
    for event in client.events(job_id):
        if event.type == "generation_best" and event.data["generation"] >= generation:
            return event.seq
    raise AssertionError("job ended before the wanted generation")


def ingress_replicas() -> set[str]:
    from ray.util.state import list_actors

    return {a.actor_id for a in list_actors(filters=[("class_name", "=", "ServeReplica:miner:MinerAPI"),
                                                     ("state", "=", "ALIVE")])}


def test_a_job_submitted_before_a_serve_redeploy_finishes_after_it(service, client):
    coordinator = ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
    before = ingress_replicas()
    job = client.submit(**SPEC)
    wait_for_generation(client, job.id, 1)
    service.deploy(args_overrides={"max_upload_mb": 6})  # new app args: Serve replaces the ingress replica
    assert ingress_replicas().isdisjoint(before)
    assert client.wait(job.id).status == "finished"  # the event stream reconnected to the new replica
    assert ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)._actor_id == coordinator._actor_id
    result = client.result(job.id)
    assert result.fitness == expected().fitness


def test_a_killed_coordinator_restarts_and_resumes_from_the_checkpoint(service, client):
    job = client.submit(**SPEC)
    seen = wait_for_generation(client, job.id, 3)
    ray.kill(ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE), no_restart=False)
    deadline = time.monotonic() + 120
    while True:  # the ingress answers 503 while the coordinator restarts, then the job continues
        try:
            if client.job(job.id).status == "finished":
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, "job did not finish after the coordinator restart"
        time.sleep(0.5)
    result = client.result(job.id)
    local = expected()
    assert result.fitness == local.fitness and result.history == local.history
    events = list(client.events(job.id))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # nothing told before is gone
    assert events[seen - 1].type == "generation_best" and events[-1].type == "finished"
    workers = client.cluster()
    assert workers.workers == 3  # the restarted coordinator rebuilt its pool


def test_workers_killed_mid_job_are_replaced_and_the_result_is_unchanged(service, client):
    coordinator = ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
    job = client.submit(**SPEC)
    wait_for_generation(client, job.id, 2)
    victims = [w["pid"] for w in ray.get(coordinator.worker_details.remote()) if w["ready"]][:2]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)  # the process dies under a running batch, like a crashed laptop
    assert client.wait(job.id).status == "finished"
    assert client.result(job.id).fitness == expected().fitness
    deadline = time.monotonic() + 60
    while client.cluster().workers < 3:  # the refresh loop puts new workers where the old ones were
        assert time.monotonic() < deadline, client.cluster()
        time.sleep(0.5)
    pids = {w["pid"] for w in ray.get(coordinator.worker_details.remote())}
    assert not pids & set(victims)


def test_a_queued_job_waits_for_a_slot_and_cancels_at_once(service, client):
    service.deploy(max_running_jobs=1)  # live: user_config only
    try:
        long = {"dataset": "BTC-USD_FIVE_MINUTE", "population": 300, "generations": 60, "seed": 1}
        first = client.submit(**long)
        wait_for_generation(client, first.id, 0)
        queued = client.submit(**{**long, "seed": 22})
        time.sleep(1.0)
        assert client.job(queued.id).status == "queued"
        client.cancel(queued.id)
        assert [e.type for e in client.events(queued.id)] == ["cancelled"]
        assert client.job(queued.id).status == "cancelled"
        assert client.job(first.id).status == "running"
        late = client.submit(**{**SPEC, "seed": 23, "generations": 2})
        service.deploy(max_running_jobs=4)  # more slots: the waiting job starts without the first ending
        for event in client.events(late.id):
            if event.type == "generation_started":
                break
        assert client.job(first.id).status == "running"
        client.cancel(first.id)
        assert client.wait(late.id).status == "finished"
    finally:
        service.deploy()


def test_a_small_job_is_not_stuck_behind_a_long_one(client):
    long = client.submit(dataset="BTC-USD_FIVE_MINUTE", population=300, generations=60, seed=3)
    wait_for_generation(client, long.id, 0)
    small = client.submit(dataset="synthetic", population=10, generations=2, seed=3)
    assert client.wait(small.id).status == "finished"
    assert client.job(long.id).status == "running"  # the small one shared the workers, it did not queue
    client.cancel(long.id)


def test_a_node_that_joins_gets_workers_and_one_that_leaves_loses_them(service, client):
    before = client.cluster().workers
    node = service.cluster.add_node(num_cpus=1)  # no label: one worker per CPU
    try:
        deadline = time.monotonic() + 90
        while client.cluster().workers < before + 1:
            assert time.monotonic() < deadline, client.cluster()
            time.sleep(0.5)
        job = client.submit(dataset="synthetic", population=30, generations=3, seed=9)
        assert client.wait(job.id).status == "finished"
    finally:
        service.cluster.remove_node(node)
    deadline = time.monotonic() + 90
    while client.cluster().workers != before:
        assert time.monotonic() < deadline, client.cluster()
        time.sleep(0.5)
    job = client.submit(dataset="synthetic", population=10, generations=2, seed=9)
    assert client.wait(job.id).status == "finished"
