"""Jobs outlive redeploys, coordinator crashes, lost workers and nodes, and a full restart of Ray, and still
give the in-process result. Each fault is real: processes are killed, nodes removed, Ray stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time

import pytest
import ray

from serve_app.config import COORDINATOR_NAME, NAMESPACE
from serve_app.store import JobStore

from .jobs import Follower, assert_same_result, assert_told_once_in_order, in_process, wait_for_generation

# a few shuffled copies: every fault test also covers the validation searches, kept short for the suite
SPEC = {"dataset": "synthetic", "population": 60, "generations": 12, "seed": 21, "risk": "HIGH",
        "evaluator": "balanced", "permutations": 3}


def expected():
    return in_process("synthetic", population=60, generations=12, seed=21, risk="HIGH", permutations=3)


def btc_job(btc_path, **spec):
    """A BTC job long enough (seconds) that a fault lands mid-job; its spec and its in-process result."""
    spec = {"population": 200, "generations": 30, "seed": 4, "risk": "MEDIUM", "permutations": 2, **spec}
    return {"dataset": "BTC-USD_FIVE_MINUTE", **spec}, in_process("BTC-USD_FIVE_MINUTE", str(btc_path), **spec)


def coordinator():
    return ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)


def ingress_replicas() -> set[str]:
    from ray.util.state import list_actors

    return {a.actor_id for a in list_actors(filters=[("class_name", "=", "ServeReplica:miner:MinerAPI"),
                                                     ("state", "=", "ALIVE")])}


def wait_until_finished(client, job_id: str, timeout_s: float = 180) -> None:
    """Poll through outages (503 or no answer while the coordinator or Ray restarts)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.job(job_id).status == "finished":
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, f"job {job_id} did not finish"
        time.sleep(0.5)


def test_a_job_survives_a_redeploy_and_a_live_reconfigure(service, client):
    before_coordinator = coordinator()._actor_id
    before = ingress_replicas()
    job = client.submit(**SPEC)
    follower = Follower(service, job.id)
    wait_for_generation(client, job.id, 1)
    service.deploy(args_overrides={"max_upload_mb": 6})  # new app args: Serve replaces the ingress replica
    assert ingress_replicas().isdisjoint(before)
    with service.deployed(default_costs={"fee_bps": 1, "slippage_bps": 0, "initial_cash": 100},  # user_config
                          pool={"batch_target_s": 0.02, "batch_timeout_s": 30, "refresh_interval_s": 2}):
        assert client.wait(job.id).status == "finished"  # the event stream reconnected to the new replica
        assert coordinator()._actor_id == before_coordinator
        assert_same_result(client.result(job.id), expected())
        assert_told_once_in_order(follower.result())


def test_a_killed_coordinator_restarts_and_resumes_from_the_checkpoint(service, client):
    job = client.submit(**SPEC)
    follower = Follower(service, job.id)  # connected before, during and after the crash
    seen = wait_for_generation(client, job.id, 3)
    ray.kill(coordinator(), no_restart=False)
    wait_until_finished(client, job.id)
    assert_same_result(client.result(job.id), expected())
    live = follower.result()
    assert_told_once_in_order(live)  # the re-mined generation is not announced twice
    replay = list(client.events(job.id))
    assert [e.model_dump() for e in live] == [e.model_dump() for e in replay]
    assert replay[seen - 1].type == "generation_best"  # nothing told before the crash is gone
    assert client.cluster().workers == 3  # the restarted coordinator rebuilt its pool


def stored_checkpoint(service, job_id: str) -> int | None:
    """The generation of the job's checkpoint, read beside the running service."""
    with contextlib.closing(sqlite3.connect(f"file:{service.state_dir / 'miner.db'}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT generation FROM checkpoints WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else row[0]


def test_a_coordinator_killed_between_checkpoints_mines_those_generations_again_telling_none_twice(service, client):
    spec = {**SPEC, "generations": 120, "permutations": 0}  # as in_process below; long: killed mid-search
    with service.deployed(checkpoint_every_s=3600):  # the first epoch's checkpoint, then only the last one's
        job = client.submit(**spec)
        follower = Follower(service, job.id)
        seen = wait_for_generation(client, job.id, 11)
        assert stored_checkpoint(service, job.id) == 5  # told through generation 14 (or more), checkpointed after 4
        ray.kill(coordinator(), no_restart=False)
        wait_until_finished(client, job.id)
    assert_same_result(client.result(job.id), in_process("synthetic", population=60, generations=120, seed=21,
                                                         risk="HIGH", permutations=0))
    live = follower.result()
    assert_told_once_in_order(live)  # generations 5 to 14 or more mined again, none of their events told again
    replay = list(client.events(job.id))
    assert [e.model_dump() for e in live] == [e.model_dump() for e in replay]
    assert replay[seen - 1].type == "generation_best"
    assert client.job(job.id).progress.evaluations == 2 * 60 * 120  # the search and its random baseline, once each


def test_a_coordinator_killed_mid_validation_resumes_it_and_the_verdict_is_unchanged(service, client):
    job = client.submit(**SPEC)
    follower = Follower(service, job.id)
    for event in client.events(job.id):
        if event.type == "validation_search_finished":  # at least one search done, the others under way
            break
    ray.kill(coordinator(), no_restart=False)
    wait_until_finished(client, job.id)
    assert_same_result(client.result(job.id), expected())  # verdict, p-value, copies' fitness included
    live = follower.result()
    assert_told_once_in_order(live)
    assert [e.type for e in live].count("validation_started") == 1
    searches = [(e.data.kind, e.data.index) for e in live if e.type == "validation_search_finished"]
    assert sorted(searches) == [("random", 0), ("shuffled", 1), ("shuffled", 2), ("shuffled", 3)]  # each once
    assert [e.model_dump() for e in live] == [e.model_dump() for e in client.events(job.id)]


def test_workers_killed_mid_job_are_replaced_and_the_result_is_unchanged(service, client):
    job = client.submit(**SPEC)
    wait_for_generation(client, job.id, 2)
    victims = [w["pid"] for w in ray.get(coordinator().worker_details.remote()) if w["ready"]][:2]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)  # the process dies under a running batch, like a crashed laptop
    assert client.wait(job.id).status == "finished"
    assert_same_result(client.result(job.id), expected())
    service.wait_for_workers(3)  # the refresh loop puts new workers where the old ones were
    pids = {w["pid"] for w in ray.get(coordinator().worker_details.remote())}
    assert not pids & set(victims)


def test_losing_the_air_node_mid_job_changes_nothing_and_its_return_grows_the_pool(service, client, btc_path):
    spec, local = btc_job(btc_path)
    job = client.submit(**spec)
    follower = Follower(service, job.id)
    wait_for_generation(client, job.id, 2)
    removed_at = time.time()
    service.cluster.remove_node(service.air_node)  # the laptop's processes die with batches in flight
    assert client.wait(job.id).status == "finished"
    assert list(client.events(job.id))[-1].time > removed_at  # the node went while the job was mining
    assert_same_result(client.result(job.id), local)
    assert_told_once_in_order(follower.result())
    assert {n.label: n.workers for n in client.cluster().nodes if n.alive} == {"head": 1}
    service.add_air_node()  # the laptop wakes up and rejoins, under a new node id
    service.wait_for_workers(3)
    assert {n.label: n.workers for n in client.cluster().nodes if n.alive} == {"head": 1, "air": 2}


def test_a_silent_laptop_s_batches_are_resent_after_the_deadline(service, client):
    """Sleep, not death: the air workers stop answering but Ray still thinks they are alive."""
    with service.deployed(pool={"batch_target_s": 0.1, "batch_timeout_s": 2, "refresh_interval_s": 5}):
        frozen = [w["pid"] for w in ray.get(coordinator().worker_details.remote()) if w["label"] == "air"]
        try:
            job = client.submit(**SPEC)
            wait_for_generation(client, job.id, 1)
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            assert client.wait(job.id).status == "finished"  # the head worker took over what they held
            assert_same_result(client.result(job.id), expected())
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)


def test_the_same_job_gives_the_same_result_on_every_cluster_shape(service, client):
    shapes = {"1 node, 2 workers": {"head": 2, "air": 0}, "2 nodes, 4 workers": {"head": 2, "air": 2}}
    for name, workers in shapes.items():
        with service.deployed(workers=workers):
            service.wait_for_workers(sum(workers.values()))
            on_nodes = {n.label: n.workers for n in client.cluster().nodes if n.alive and n.workers}
            assert on_nodes == {label: count for label, count in workers.items() if count}, name
            job = client.submit(**SPEC)
            assert client.wait(job.id).status == "finished", name
            assert_same_result(client.result(job.id), expected())  # and in-process mode


def test_a_queued_job_waits_for_a_slot_and_cancels_at_once(service, client):
    with service.deployed(max_running_jobs=1):  # live: user_config only
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


def test_a_small_job_is_not_stuck_behind_a_long_one(client):
    long = client.submit(dataset="BTC-USD_FIVE_MINUTE", population=300, generations=60, seed=3)
    wait_for_generation(client, long.id, 0)
    small = client.submit(dataset="synthetic", population=10, generations=2, seed=3)
    assert client.wait(small.id).status == "finished"
    assert client.job(long.id).status == "running"  # the small one shared the workers, it did not queue
    client.cancel(long.id)
    assert client.wait(long.id).status == "cancelled"


def test_a_node_that_joins_gets_workers_and_one_that_leaves_loses_them(service, client):
    before = client.cluster().workers
    node = service.cluster.add_node(num_cpus=1)  # no label: one worker per CPU
    try:
        service.wait_for_workers(before + 1, timeout_s=90)
        job = client.submit(dataset="synthetic", population=30, generations=3, seed=9)
        assert client.wait(job.id).status == "finished"
    finally:
        service.cluster.remove_node(node)
    service.wait_for_workers(before, timeout_s=90)
    job = client.submit(dataset="synthetic", population=10, generations=2, seed=9)
    assert client.wait(job.id).status == "finished"


@pytest.mark.slow
def test_a_full_restart_of_ray_keeps_every_job_and_result_and_resumes_the_unfinished(service, client, btc_path):
    service.deploy(max_running_jobs=1)  # the doomed job waits behind the first: however slow the machine, it cannot
    spec, local = btc_job(btc_path, seed=8)  # end before the cut (start() below deploys the plain configuration)
    job = client.submit(**spec)
    doomed = client.submit(**{**spec, "seed": 9})
    wait_for_generation(client, job.id, 2)
    # and however fast the machine, the first cannot end before the cut either: its workers freeze now (reading the
    # earlier jobs' results below takes seconds in a long session, longer than the rest of this job once took)
    frozen = [w["pid"] for w in ray.get(coordinator().worker_details.remote())]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    before = {j.id: j for j in client.jobs(limit=1000)}
    results = {i: client.result(i) for i, j in before.items() if j.status == "finished"}
    follower = Follower(service, job.id)  # keeps reconnecting while the service is down
    with service.power_cut():  # every Ray process dies, the coordinator and workers with it
        for pid in frozen:  # a frozen worker cannot notice that its raylet is gone: it dies as the power cut says
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        store = JobStore(service.state_dir / "miner.db")
        at_the_cut = {job_id: store.get_job(job_id)["status"] for job_id in (job.id, doomed.id)}
        assert at_the_cut == {job.id: "running", doomed.id: "queued"}, at_the_cut  # what this test is about
        store.request_cancel(doomed.id)  # acknowledged, then the power went
        store.close()
    # Ray started again: same data and state directories, same port
    wait_until_finished(client, job.id)
    assert_same_result(client.result(job.id), local)
    after = {j.id: j for j in client.jobs(limit=1000)}
    assert set(before) <= set(after)
    for job_id, result in results.items():
        assert after[job_id].status == "finished"
        assert client.result(job_id) == result
    for job_id, old in before.items():  # nothing ended differently from how it had ended
        if old.status in ("failed", "cancelled"):
            assert after[job_id].status == old.status
    assert client.wait(doomed.id).status == "cancelled"  # the cancel was not forgotten
    assert [e.type for e in client.events(doomed.id)].count("cancelled") == 1
    live = follower.result()
    assert_told_once_in_order(live)
    assert [e.model_dump() for e in live] == [e.model_dump() for e in client.events(job.id)]


def test_a_cancel_ends_a_job_whose_batches_are_all_held_by_hung_workers(service, client):
    """Every worker frozen mid-batch and no deadline to resend: DELETE still ends the job within seconds."""
    with service.deployed(pool={"batch_target_s": 0.5, "batch_timeout_s": 600, "refresh_interval_s": 5}):
        frozen = [w["pid"] for w in ray.get(coordinator().worker_details.remote())]
        try:
            job = client.submit(**{**SPEC, "population": 400, "generations": 50})
            wait_for_generation(client, job.id, 1)
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(1.0)  # every batch of the generation under way is now out, with a worker that never answers
            client.cancel(job.id)
            deadline = time.monotonic() + 5
            while client.job(job.id).status != "cancelled":
                assert time.monotonic() < deadline, f"job still {client.job(job.id).status} 5 s after DELETE"
                time.sleep(0.2)
            assert client.job(job.id).status == "cancelled"
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
