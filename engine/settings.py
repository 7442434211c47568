"""Typed settings for a mining job: risk presets and GA parameters (the user's choices are
``schema.job.JobParameters``, costs ``schema.costs.Costs``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine import layout as L
from schema.costs import Costs
from schema.job import JobParameters, RiskLevel


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Bounds(_Settings):
    low: float
    high: float


class RiskPreset(_Settings):
    """Ranges the GA draws and mutates risk genes in; 0 for a stop, take-profit or trailing stop means 'off'."""

    stop_loss: Bounds
    take_profit: Bounds
    trailing_stop: Bounds
    size: Bounds
    leverage: Bounds
    allow_short: bool = True
    stop_required: bool = False  # every strategy has a stop-loss (LOW: a trader asking for low risk expects one)


RISK_PRESETS: dict[RiskLevel, RiskPreset] = {
    RiskLevel.LOW: RiskPreset(stop_loss=Bounds(low=0.005, high=0.02), take_profit=Bounds(low=0.005, high=0.04),
                              trailing_stop=Bounds(low=0.005, high=0.02), size=Bounds(low=0.1, high=0.5),
                              leverage=Bounds(low=1.0, high=1.0), stop_required=True),
    RiskLevel.MEDIUM: RiskPreset(stop_loss=Bounds(low=0.005, high=0.04), take_profit=Bounds(low=0.005, high=0.08),
                                 trailing_stop=Bounds(low=0.005, high=0.04), size=Bounds(low=0.25, high=1.0),
                                 leverage=Bounds(low=1.0, high=2.0)),
    RiskLevel.HIGH: RiskPreset(stop_loss=Bounds(low=0.01, high=0.08), take_profit=Bounds(low=0.01, high=0.15),
                               trailing_stop=Bounds(low=0.01, high=0.08), size=Bounds(low=0.5, high=1.0),
                               leverage=Bounds(low=1.0, high=5.0)),
}

DEFAULT_PERIOD_MENU = (5, 7, 10, 14, 20, 30, 50, 100, 200)


class MinerSettings(_Settings, JobParameters):
    """Everything that, with the data, the seed and the evaluator, determines a mining result: the job's parameters
    (``schema.job.JobParameters``, shared with the API's job spec), the GA's own knobs and the costs."""

    elite: int = Field(2, ge=0, description="best genomes of each island kept as parents, never re-evaluated")
    # 5, not 3: islands of 25 need the pressure (bench/search.py: more wins over the random baseline, docs/search.md)
    tournament_size: int = Field(5, ge=2, le=64)
    crossover_rate: float = Field(0.9, ge=0.0, le=1.0)
    mutation_rate: float = Field(0.2, ge=0.0, le=1.0)
    period_menu: tuple[int, ...] = Field(DEFAULT_PERIOD_MENU, min_length=2, max_length=64)
    batch_size: int = Field(256, ge=1, le=100_000, description="genomes per evaluation call")
    costs: Costs = Costs()

    @field_validator("period_menu")
    @classmethod
    def _periods(cls, menu: tuple[int, ...]) -> tuple[int, ...]:
        bad = [p for p in menu if not L.MIN_PERIOD <= p <= L.MAX_PERIOD]
        if bad:
            raise ValueError(f"indicator periods must be between {L.MIN_PERIOD} and {L.MAX_PERIOD} bars; "
                             f"got {bad}")
        return tuple(sorted(set(menu)))

    @model_validator(mode="after")
    def _elite_fits(self) -> MinerSettings:
        if self.elite >= self.population:
            raise ValueError(f"elite ({self.elite}) must be smaller than population ({self.population})")
        return self

    @property
    def preset(self) -> RiskPreset:
        return RISK_PRESETS[self.risk]
