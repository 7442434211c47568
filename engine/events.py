"""Progress events a mining run reports, discriminated by ``type``: those of ``schema.events``, the definitions the
service stores and streams, with a generation's best genome as a ``Genome``.

The in-process miner hands them to a callback; the service stores the same payloads.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from engine.genome import Genome
from schema import events
from schema.events import (
    BatchEvaluated,
    Cancelled,
    Finished,
    GenerationStarted,
    JobStarted,
    ValidationSearchFinished,
    ValidationStarted,
)


class GenerationBest(events.GenerationBest):
    """The wire's event with the genome itself; its readable line (``strategy``) is derived from it."""

    genome: Genome

    @model_validator(mode="before")
    @classmethod
    def _describe(cls, data: Any) -> Any:
        if isinstance(data, dict) and "strategy" not in data and "genome" in data:
            data = {**data, "strategy": Genome.model_validate(data["genome"]).describe()}
        return data


MiningEvent = Annotated[
    JobStarted | GenerationStarted | BatchEvaluated | GenerationBest | ValidationStarted | ValidationSearchFinished
    | Finished | Cancelled,
    Field(discriminator="type"),
]

__all__ = ["BatchEvaluated", "Cancelled", "Finished", "GenerationBest", "GenerationStarted", "JobStarted",
           "MiningEvent", "ValidationSearchFinished", "ValidationStarted"]
