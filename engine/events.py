"""Progress events a mining run reports, discriminated by ``type``.

The in-process miner hands them to a callback; the service stores and streams the same payloads.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.genome import Genome


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class JobStarted(_Event):
    type: Literal["job_started"] = "job_started"
    population: int
    generations: int
    train_bars: int
    holdout_bars: int
    data_fingerprint: str
    evaluator_version: str
    folds: int = 1
    permutations: int = 0


class GenerationStarted(_Event):
    type: Literal["generation_started"] = "generation_started"
    generation: int


class BatchEvaluated(_Event):
    type: Literal["batch_evaluated"] = "batch_evaluated"
    generation: int
    evaluated: int
    total: int


class GenerationBest(_Event):
    type: Literal["generation_best"] = "generation_best"
    generation: int
    fitness: float
    best_fitness_so_far: float
    genome: Genome
    metrics: dict[str, float]


class ValidationStarted(_Event):
    """The GA is done; the random baseline and the searches on shuffled copies start."""

    type: Literal["validation_started"] = "validation_started"
    searches: int
    permutations: int


class ValidationSearchFinished(_Event):
    """One validation search ran to its end: the random baseline (index 0) or shuffled copy ``index``."""

    type: Literal["validation_search_finished"] = "validation_search_finished"
    kind: Literal["random", "shuffled"]
    index: int
    best_fitness: float
    done: int
    total: int


class Finished(_Event):
    type: Literal["finished"] = "finished"
    best_fitness: float
    generations_run: int


class Cancelled(_Event):
    type: Literal["cancelled"] = "cancelled"
    generation: int


MiningEvent = Annotated[
    JobStarted | GenerationStarted | BatchEvaluated | GenerationBest | ValidationStarted | ValidationSearchFinished
    | Finished | Cancelled,
    Field(discriminator="type"),
]
