"""What a mining job's user chooses: one definition of each choice, its bounds and its default, for the API's job
spec (``client.models.JobSpec``) and the engine's settings (``engine.settings.MinerSettings``) alike."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from schema.research import ValidationSettings
from schema.search import SearchSettings


class RiskLevel(StrEnum):
    """How large positions are and how far stops sit (the engine's ``RISK_PRESETS``)."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class JobParameters(ValidationSettings, SearchSettings):
    """The search's size, risk, seed and holdout, with folds, min_trades and permutations (how the result is tested,
    ``schema.research``) and islands and hall_of_fame (how the search is organised, ``schema.search``)."""

    # 30,000 evaluations per search by default: at 100 x 30 the search found a planted edge in 2-3 seeds of 10, at
    # 1000 x 30 in 9 (10 with 8 islands), while its best on shuffled copies stayed at most 1.01 (docs/research.md)
    population: int = Field(1000, ge=4, le=100_000, description="genomes per generation")
    generations: int = Field(30, ge=1, le=100_000, description="generations the search runs")
    risk: RiskLevel = Field(RiskLevel.MEDIUM, description="the ranges of stops, size and leverage the search draws "
                                                          "from (case does not matter): LOW always a stop-loss of "
                                                          "0.5-2 %, size 10-50 %, no leverage; MEDIUM stop 0.5-4 % or "
                                                          "none, size 25-100 %, leverage up to 2x; HIGH stop 1-8 % or "
                                                          "none, size 50-100 %, leverage up to 5x")
    seed: int = Field(0, ge=0, le=2**63 - 1,
                      description="random seed: the same seed, data and settings give the same result")
    holdout_fraction: float = Field(0.2, ge=0.0, le=0.5,
                                    description="share of the most recent bars kept out of training")

    @field_validator("risk", mode="before")
    @classmethod
    def _risk_upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value
