"""A job keeps its best distinct strategies however it ends: a cancelled job has a result (its best so far, as
`show` displayed it, not validated), and the hall of fame is the in-process engine's on any cluster shape and after
a coordinator crash."""

from __future__ import annotations

import ray

from client import models as wire
from engine.genome import Genome, encode, genome_keys
from engine.hall_of_fame import HallOfFameEntry

from .jobs import in_process, wait_for_generation
from .test_resilience import coordinator, wait_until_finished

SETTINGS = {"population": 48, "generations": 10, "seed": 13, "risk": "HIGH", "hall_of_fame": 12}
SPEC = {"dataset": "synthetic", "evaluator": "balanced", "permutations": 0, **SETTINGS}


def on_the_wire(hall: list[HallOfFameEntry]) -> list[wire.HallOfFameEntry]:
    return [wire.HallOfFameEntry.model_validate(entry.model_dump(mode="json")) for entry in hall]


def assert_distinct_and_sorted(hall: list[wire.HallOfFameEntry]) -> None:
    assert [e.fitness for e in hall] == sorted((e.fitness for e in hall), reverse=True)
    keys = {int(genome_keys(encode(Genome.model_validate(e.genome)))[0]) for e in hall}
    assert len(keys) == len(hall)


def test_a_cancelled_job_keeps_its_best_so_far_and_its_hall_of_fame(client):
    job = client.submit(**{**SPEC, "generations": 400})
    wait_for_generation(client, job.id, 2)
    client.cancel(job.id)
    info = client.wait(job.id)
    assert info.status == "cancelled"
    result = client.result(job.id)
    generations = info.progress.generation
    assert result.cancelled and result.generations_run == generations >= 3
    assert result.validation.verdict == "not_validated"
    assert (result.genome, result.fitness, result.strategy) == (info.best.genome, info.best.fitness,
                                                                 info.best.strategy)  # what `show` displayed
    hall = result.hall_of_fame
    assert len(hall) == 12 and (hall[0].genome, hall[0].fitness) == (result.genome, result.fitness)
    assert hall[0].train_metrics == result.train.metrics and hall[0].holdout_metrics == result.holdout.metrics
    assert_distinct_and_sorted(hall)
    # the generations it completed are those of a job asked for that many: the same hall, to the last bit
    assert hall == on_the_wire(in_process("synthetic", **{**SETTINGS, "generations": generations},
                                          permutations=0).hall_of_fame)


def test_the_hall_of_fame_is_the_engine_s_on_every_cluster_shape(service, client):
    expected = on_the_wire(in_process("synthetic", **SETTINGS, permutations=0).hall_of_fame)
    shapes = {"1 node, 1 worker": {"head": 1, "air": 0}, "2 nodes, 3 workers": {"head": 1, "air": 2}}
    for name, workers in shapes.items():
        with service.deployed(workers=workers):
            service.wait_for_workers(sum(workers.values()))
            job = client.submit(**SPEC)
            assert client.wait(job.id).status == "finished", name
            result = client.result(job.id)
            assert not result.cancelled and result.hall_of_fame == expected, name
    assert_distinct_and_sorted(expected)


def test_a_killed_coordinator_resumes_with_the_same_hall_of_fame(client):
    job = client.submit(**SPEC)
    wait_for_generation(client, job.id, 3)
    ray.kill(coordinator(), no_restart=False)
    wait_until_finished(client, job.id)
    assert client.result(job.id).hall_of_fame == on_the_wire(in_process("synthetic", **SETTINGS,
                                                                        permutations=0).hall_of_fame)
