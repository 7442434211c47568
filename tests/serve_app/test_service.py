"""The service over real HTTP and WebSocket, on the session's two-node cluster."""

from __future__ import annotations

import time

import httpx
import pytest

from client import NotFoundError, ServiceError
from client.models import JobSpec
from engine.candles import load_candles
from engine.miner import mine
from engine.settings import Costs, MinerSettings
from tests.service_fixture import WORKERS_PER_LABEL


def wait_status(client, job_id, statuses=("finished", "failed", "cancelled"), timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while (job := client.job(job_id)).status not in statuses:
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job.status}"
        time.sleep(0.2)
    return job


def test_workers_land_on_both_nodes_in_the_configured_numbers(client):
    cluster = client.cluster()
    by_label = {node.label: node.workers for node in cluster.nodes if node.alive}
    assert by_label == WORKERS_PER_LABEL
    assert cluster.workers == 3 and cluster.pending_workers == 0 and cluster.refused_workers == 0


def test_the_coordinator_and_the_ingress_live_on_the_head_node(service):
    from ray.util.state import list_actors

    head = service.cluster.head_node.node_id
    for name in ("MinerCoordinator", "ServeReplica:miner:MinerAPI"):
        actors = list_actors(filters=[("class_name", "=", name), ("state", "=", "ALIVE")])
        assert actors and {a.node_id for a in actors} == {head}, name


def test_job_result_equals_the_in_process_engine(client, btc_path):
    spec = JobSpec(dataset="BTC-USD_FIVE_MINUTE", population=16, generations=3, risk="MEDIUM", seed=3,
                   costs={"fee_bps": 10, "slippage_bps": 2, "initial_cash": 5_000}, evaluator="balanced")
    job = client.submit(spec)
    done = client.wait(job.id)
    assert done.status == "finished", done
    result = client.result(job.id)
    local = mine(load_candles(btc_path), MinerSettings(population=16, generations=3, risk="MEDIUM", seed=3,
                                                       costs=Costs(fee_bps=10, slippage_bps=2, initial_cash=5_000)))
    assert result.genome == local.best_genome.model_dump(mode="json")
    assert result.fitness == local.fitness and result.history == local.history
    assert result.train.metrics == local.train_metrics and result.holdout.metrics == local.holdout_metrics
    assert result.evaluator_version == local.evaluator_version
    assert result.data_fingerprint == local.data_fingerprint and result.seed == 3
    assert result.train.metrics["trades"] == len(result.train.trades)
    assert len(result.train.equity.time) == len(result.train.equity.equity) <= 2_001


def test_event_stream_replays_from_since_and_ends_with_the_terminal_event(client):
    job = client.submit(dataset="synthetic", population=12, generations=3, seed=5)
    live = list(client.events(job.id))
    assert [e.seq for e in live] == list(range(1, len(live) + 1))
    assert live[0].type == "job_started" and live[-1].type == "finished"
    assert [e.type for e in live].count("generation_best") == 3
    replay = list(client.events(job.id, since=4))
    assert [e.model_dump() for e in replay] == [e.model_dump() for e in live[4:]]
    assert list(client.events(job.id, since=live[-1].seq)) == []  # nothing after the end: returns at once


def test_job_progress_and_listing(client):
    job = client.submit(dataset="synthetic", population=10, generations=2, seed=8)
    info = wait_status(client, job.id)
    searches = 2 + 19  # the GA, the random baseline and the 19 shuffled copies, each 10 x 2 genomes
    assert info.progress.generation == 2 and info.progress.evaluations == 20 * searches
    assert info.progress.validation_done == info.progress.validation_searches == searches - 1
    assert info.best is not None and info.best.strategy and info.evaluator_version.startswith("balanced@")
    assert job.id in [j.id for j in client.jobs()]


def test_cancel_stops_a_running_job_between_batches(client):
    # a first generation of about 0.6 s on two workers: the cancel sent at its first batch lands before it completes
    # (with 400 genomes, ~25 ms, it sometimes completed first, and a job that completed a generation has a result)
    job = client.submit(dataset="BTC-USD_FIVE_MINUTE", population=8_000, generations=50, seed=1)
    for event in client.events(job.id):
        if event.type == "batch_evaluated":
            client.cancel(job.id)
            break
    events = list(client.events(job.id, since=event.seq))
    assert events[-1].type == "cancelled"
    info = wait_status(client, job.id)
    assert info.status == "cancelled" and info.progress.generation < 50
    with pytest.raises(ServiceError) as error:
        client.result(job.id)
    assert error.value.status == 409 and "cancelled" in error.value.message
    with pytest.raises(ServiceError, match="already cancelled"):
        client.cancel(job.id)


# ---- bad input ----------------------------------------------------------------------------------------

def test_unknown_job(client):
    for call in (client.job, client.result, client.cancel):
        with pytest.raises(NotFoundError, match="unknown job 'zzz'"):
            call("zzz")


def test_openapi_is_served(service):
    spec = httpx.get(f"{service.url}/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}/result", "/v1/datasets", "/v1/cluster"} <= set(spec["paths"])


def test_a_dataset_too_short_for_the_holdout_or_the_folds_is_refused_at_submission(client, tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_bytes(csv_bytes(n=300))
    client.upload_dataset(path)
    with pytest.raises(ServiceError) as error:
        client.submit(dataset="tiny", population=6, generations=1, holdout_fraction=0.2)
    assert error.value.status == 422 and "too few for a 20% holdout" in error.value.message
    with pytest.raises(ServiceError) as error:
        client.submit(dataset="tiny", population=6, generations=1, holdout_fraction=0.0, folds=4)
    assert error.value.status == 422 and "300 training bars are too few for 4 folds" in error.value.message


# ---- datasets ----------------------------------------------------------------------------------------

def csv_bytes(n=1_000, seed=2) -> bytes:
    from engine.synthetic import synthetic_candles

    c = synthetic_candles(n, seed=seed)
    rows = ["timestamp,open,high,low,close,volume"] + [
        f"{t},{o},{h},{lo},{cl},{v}" for t, o, h, lo, cl, v in zip(c.timestamp, c.open, c.high, c.low, c.close,
                                                                    c.volume, strict=True)]
    return ("\n".join(rows) + "\n").encode()


def test_upload_then_mine_it(client, service, tmp_path):
    path = tmp_path / "small_upload.csv"
    path.write_bytes(csv_bytes())
    info = client.upload_dataset(path)
    assert (info.name, info.candles, info.source) == ("small_upload", 1_000, "upload")
    assert client.upload_dataset(path).fingerprint == info.fingerprint  # same content again: fine
    assert "small_upload" in [d.name for d in client.datasets()]
    job = client.submit(dataset="small_upload", population=6, generations=1)
    assert client.wait(job.id).status == "finished"
    other = tmp_path / "other.csv"
    other.write_bytes(csv_bytes(seed=3))
    with pytest.raises(ServiceError) as error:
        client.upload_dataset(other, name="small_upload")
    assert error.value.status == 409
    assert client.datasets()[[d.name for d in client.datasets()].index("small_upload")].fingerprint == \
        info.fingerprint  # the stored dataset is untouched
