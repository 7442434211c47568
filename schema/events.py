"""A mining job's progress events, discriminated by ``type``: one definition for the engine that emits them, the
service that stores and streams them and the client that reads them.

On the wire each event is one entry of the job's append-only log, ``{"seq", "job_id", "type", "time", "data"}``,
with the event's own fields in ``data`` (``Event``; docs/api.md lists them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_serializer, model_validator


class EventData(BaseModel):
    """What one event says; each kind names itself in ``type``."""

    model_config = ConfigDict(frozen=True)

    def __getitem__(self, field: str) -> Any:
        """``event.data["generation"]``: the reads of clients written when ``data`` was a plain dict still work."""
        if field not in type(self).model_fields:
            raise KeyError(field)
        return getattr(self, field)


class JobStarted(EventData):
    type: Literal["job_started"] = "job_started"
    population: int
    generations: int
    train_bars: int
    holdout_bars: int
    data_fingerprint: str
    evaluator_version: str
    folds: int = 1
    permutations: int = 0


class GenerationStarted(EventData):
    type: Literal["generation_started"] = "generation_started"
    generation: int


class BatchEvaluated(EventData):
    type: Literal["batch_evaluated"] = "batch_evaluated"
    generation: int
    evaluated: int = Field(description="genomes done in this generation (an epoch's first: its islands back)")
    total: int


class GenerationBest(EventData):
    type: Literal["generation_best"] = "generation_best"
    generation: int
    fitness: float
    best_fitness_so_far: float
    genome: dict[str, Any]
    metrics: dict[str, float]
    strategy: str = Field(description="the genome in one readable line")


class ValidationStarted(EventData):
    """The GA is done; the random baseline and the searches on shuffled copies start."""

    type: Literal["validation_started"] = "validation_started"
    searches: int
    permutations: int


class ValidationSearchFinished(EventData):
    """One validation search ran to its end: the random baseline (index 0) or shuffled copy ``index``."""

    type: Literal["validation_search_finished"] = "validation_search_finished"
    kind: Literal["random", "shuffled"]
    index: int
    best_fitness: float
    done: int
    total: int


class Finished(EventData):
    type: Literal["finished"] = "finished"
    best_fitness: float
    generations_run: int


class Failed(EventData):
    type: Literal["failed"] = "failed"
    error: str


class Cancelled(EventData):
    type: Literal["cancelled"] = "cancelled"
    generation: int


class Paused(EventData):
    """The job waits, and ``reason`` says why and what fixes it: the disk under the job store filled up (its last
    committed generation kept; it resumes by itself when writes succeed again, or at the service's next start), or
    every worker refuses work because it runs other engine code than the coordinator (its batches wait in the
    queue; it resumes as soon as a worker may take them)."""

    type: Literal["paused"] = "paused"
    reason: str


class Resumed(EventData):
    """Writes succeed again: the job goes on from its last committed generation, to the result it would have had."""

    type: Literal["resumed"] = "resumed"


AnyEventData = Annotated[
    JobStarted | GenerationStarted | BatchEvaluated | GenerationBest | ValidationStarted | ValidationSearchFinished
    | Finished | Failed | Cancelled | Paused | Resumed,
    Field(discriminator="type"),
]
EVENT_TYPES = frozenset(kind.model_fields["type"].default for kind in get_args(get_args(AnyEventData)[0]))


class Event(BaseModel):
    """One entry of a job's append-only event log; ``seq`` counts from 1 per job. ``type`` travels beside
    ``data``, not in it."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    job_id: str
    time: float
    data: AnyEventData

    @model_validator(mode="before")
    @classmethod
    def _type_into_data(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("data"), dict) and "type" in value:
            value = dict(value)
            value["data"] = {**value["data"], "type": value.pop("type")}
        return value

    @computed_field
    @property
    def type(self) -> str:
        return self.data.type

    @field_serializer("data")
    def _data_without_type(self, data: EventData, info) -> dict[str, Any]:
        return data.model_dump(mode=info.mode, exclude={"type"})
