"""Submitting twice never makes two jobs: ``POST /v1/jobs`` with an ``Idempotency-Key`` gives back the job the key
first created (stored with it, so it outlives the ingress), a different body under the same key is 409, and clients
that retry through a killed ingress replica end up with each job exactly once."""

from __future__ import annotations

import random
import threading
import time
import uuid

import httpx
import ray

TINY = {"dataset": "synthetic", "population": 8, "generations": 1, "permutations": 0}


def post(service, body: dict, key: str) -> httpx.Response:
    return httpx.post(f"{service.url}/v1/jobs", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {service.token}", "Idempotency-Key": key})


def jobs_with_seeds(client, seeds) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for job in client.jobs(limit=1000):
        if job.spec.seed in seeds:
            found.setdefault(job.spec.seed, []).append(job.id)
    return found


def test_the_same_key_twice_gives_one_job_and_another_body_gets_409(service, client):
    seed, key = random.randrange(10**12), uuid.uuid4().hex
    first = post(service, {**TINY, "seed": seed}, key)
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers, first.text
    job = first.json()["id"]
    spelled_out = {"seed": seed, "risk": "MEDIUM", **TINY, "holdout_fraction": 0.2}  # same request, other spelling
    again = post(service, spelled_out, key)
    assert (again.status_code, again.json()["id"], again.headers.get("Idempotent-Replayed")) == (202, job, "true")
    other = post(service, {**TINY, "seed": seed + 1}, key)
    assert other.status_code == 409 and other.json()["error"] == "conflict", other.text
    assert job in other.json()["message"] and "different request" in other.json()["message"]
    assert jobs_with_seeds(client, {seed, seed + 1}) == {seed: [job]}
    for bad in ("", "has spaces", "x" * 201):
        refused = post(service, {**TINY, "seed": seed + 2}, bad)
        assert refused.status_code == 422 and "Idempotency-Key" in refused.json()["message"], (bad, refused.text)
    assert client.wait(job).status == "finished"


def ingress_replicas(service) -> dict[str, str]:
    """{actor id: name} of the live ingress replicas of this test's cluster (named: the machine may run others)."""
    from ray.util.state import list_actors

    return {a.actor_id: a.name for a in list_actors(address=service.cluster.address, filters=[
        ("class_name", "=", "ServeReplica:miner:MinerAPI"), ("state", "=", "ALIVE")])}


def kill_the_ingress(service) -> set[str]:
    """End the ingress replica as a crash would (Serve starts a new one); returns the old replica's id."""
    ((actor_id, name),) = ingress_replicas(service).items()
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return {actor_id}


def wait_for_a_new_ingress(service, client, old: set[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if set(ingress_replicas(service)) - old and client.jobs(limit=1) is not None:
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, "no new ingress replica"
        time.sleep(0.5)


def test_clients_retrying_through_a_killed_ingress_get_each_job_exactly_once(service, client):
    """The attack: submissions in flight while the ingress replica is killed (before the fix: plain-text 500s, some
    of those jobs stored anyway, and a client that retried created duplicates)."""
    base = random.randrange(10**12)
    keys = {base + i: uuid.uuid4().hex for i in range(16)}
    answered_before = {seed: client.submit(idempotency_key=keys[seed], seed=seed, **TINY).id for seed in list(keys)[:4]}
    answers: dict[int, str] = {}
    sent: list[str] = []  # one entry per POST that went out, retries included

    def submitter():
        own = service.client(retry_submit_for_s=120)
        own._http.event_hooks["request"].append(lambda request: sent.append(request.headers["Idempotency-Key"]))
        return own

    def submit_in_a_loop(seeds: list[int]) -> None:
        with submitter() as own:
            for seed in seeds:
                answers[seed] = own.submit(idempotency_key=keys[seed], seed=seed, **TINY).id

    later = list(keys)[4:]
    threads = [threading.Thread(target=submit_in_a_loop, args=(later[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    old = kill_the_ingress(service)
    # the same keys as before the kill, sent again while the ingress is down and coming back: the same jobs
    with submitter() as retrying:
        again = {seed: retrying.submit(idempotency_key=keys[seed], seed=seed, **TINY).id for seed in answered_before}
    for thread in threads:
        thread.join(180)
    wait_for_a_new_ingress(service, client, old)
    assert again == answered_before
    assert set(answers) == set(later)
    stored = jobs_with_seeds(client, set(keys))
    assert stored == {seed: [job] for seed, job in {**answered_before, **answers}.items()}  # each once, as answered
    print(f"\n{len(keys)} jobs, {len(sent)} POSTs after the first four ({len(sent) - 16} retries through the outage)")
    for job in [*answered_before.values(), *answers.values()]:
        assert client.wait(job).status == "finished"
