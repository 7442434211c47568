"""Load and limits: many followers and a deep queue on the real service; configured limits refuse clearly."""

from __future__ import annotations

import time

import pytest
import ray

from client import ServiceError
from serve_app.config import COORDINATOR_NAME, NAMESPACE

from .jobs import Follower, assert_told_once_in_order, store_snapshot

JOBS, FOLLOWERS = 20, 50
LONG = {"dataset": "BTC-USD_FIVE_MINUTE", "population": 300, "generations": 60}


def coordinator_memory() -> dict:
    return ray.get(ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE).memory.remote())


@pytest.mark.slow
def test_fifty_followers_of_twenty_queued_jobs_each_get_every_event_in_order(service, client):
    spec = {"dataset": "synthetic", "population": 60, "generations": 8, "permutations": 0}
    client.wait(client.submit(**spec, seed=99).id)  # warm the coordinator's caches before measuring it
    with service.deployed(max_running_jobs=2):
        before = coordinator_memory()
        jobs = [client.submit(**spec, seed=seed).id for seed in range(JOBS)]
        followers = [Follower(service, jobs[i % JOBS]) for i in range(FOLLOWERS)]
        assert sum(client.job(j).status == "queued" for j in jobs) >= JOBS // 2
        delivered = 0
        for follower in followers:
            live = follower.result(timeout_s=300)
            assert_told_once_in_order(live)
            assert live[-1].type == "finished"
            stored = list(client.events(follower.job_id))
            assert [e.model_dump() for e in live] == [e.model_dump() for e in stored]  # every event, in order
            delivered += len(live)
        assert all(client.job(j).status == "finished" for j in jobs)
        after = coordinator_memory()
    print(f"\n{FOLLOWERS} followers of {JOBS} jobs: {delivered} events delivered; coordinator RSS "
          f"{before['rss'] / 1e6:.0f} -> {after['rss'] / 1e6:.0f} MB")
    assert after["runners"] == 0 and after["followed_jobs"] == 0 and after["cancel_requests"] == 0
    assert (after["rss"] - before["rss"]) / 1e6 < 50  # bounded: nothing kept per event (margin for the allocator)


def test_a_submission_beyond_max_unfinished_jobs_gets_429_and_changes_nothing(service, client):
    with service.deployed(max_unfinished_jobs=2, max_running_jobs=1):
        running = [client.submit(**LONG, seed=seed).id for seed in (1, 2)]
        before = store_snapshot(service)
        with pytest.raises(ServiceError) as refused:
            client.submit(**LONG, seed=3)
        assert refused.value.status == 429 and refused.value.code == "too_many"
        assert "limit is 2 (user_config max_unfinished_jobs)" in refused.value.message
        assert store_snapshot(service) == before
        for job_id in running:
            client.cancel(job_id)
            assert client.wait(job_id).status == "cancelled"
        assert client.wait(client.submit(dataset="synthetic", population=6, generations=1).id).status == "finished"


def test_a_follower_beyond_max_followers_is_refused_with_4429(service, client):
    with service.deployed(max_followers=2):
        job = client.submit(**LONG, seed=4).id
        followers = [Follower(service, job) for _ in range(2)]
        deadline = time.monotonic() + 30
        while not all(f.events for f in followers):
            assert time.monotonic() < deadline and not any(f.error for f in followers), "followers got nothing"
            time.sleep(0.2)
        with pytest.raises(ServiceError) as refused:
            list(client.events(job))
        assert refused.value.status == 429 and "user_config max_followers" in refused.value.message
        client.cancel(job)
        for follower in followers:
            assert follower.result()[-1].type == "cancelled"
