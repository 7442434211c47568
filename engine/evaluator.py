"""Fitness functions over the metrics matrix (``engine.layout.METRICS`` columns).

An evaluator maps metrics (n_genomes, N_METRICS) to one fitness per genome, higher is better.
Its version id (name + content hash of its source and parameters) is pinned in every result, so a
result always says exactly how it was scored.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine import layout as L


class Evaluator(ABC):
    """Base class: subclasses set ``name`` and ``Params`` and implement ``score``."""

    name: ClassVar[str]

    class Params(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **params):
        self.params = self.Params(**params)

    @abstractmethod
    def score(self, metrics: np.ndarray) -> np.ndarray:
        """Fitness per row of ``metrics``; non-finite values are treated as the worst possible."""

    @property
    def version(self) -> str:
        source = inspect.getsource(type(self))
        payload = source + json.dumps(self.params.model_dump(), sort_keys=True)
        return f"{self.name}@{hashlib.sha256(payload.encode()).hexdigest()[:12]}"

    def fitness(self, metrics: np.ndarray) -> np.ndarray:
        """``score`` checked for shape, with NaN/inf mapped to -inf so they always rank last."""
        scores = np.asarray(self.score(metrics), dtype=np.float64)
        if scores.shape != (metrics.shape[0],):
            raise ValueError(f"evaluator {self.name} returned shape {scores.shape}, "
                             f"expected ({metrics.shape[0]},)")
        return np.where(np.isfinite(scores), scores, -np.inf)


class BalancedEvaluator(Evaluator):
    """Annualised Sharpe, minus a penalty for too few trades and for drawdowns beyond a limit.

    fitness = sharpe - too_few_trades_penalty * max(0, 1 - trades / min_trades)
                     - drawdown_penalty * max(0, max_drawdown - drawdown_limit)

    A strategy that never trades scores -too_few_trades_penalty; one with a 45 % drawdown under the
    default limit of 25 % loses 2 points of Sharpe.
    """

    name = "balanced"

    class Params(Evaluator.Params):
        min_trades: int = Field(30, ge=1)
        too_few_trades_penalty: float = Field(2.0, ge=0)
        drawdown_limit: float = Field(0.25, ge=0, le=1)
        drawdown_penalty: float = Field(10.0, ge=0)

    def score(self, metrics: np.ndarray) -> np.ndarray:
        p = self.params
        trades = metrics[:, L.M_TRADES]
        drawdown = metrics[:, L.M_MAX_DRAWDOWN]
        return (metrics[:, L.M_SHARPE]
                - p.too_few_trades_penalty * np.maximum(0.0, 1.0 - trades / p.min_trades)
                - p.drawdown_penalty * np.maximum(0.0, drawdown - p.drawdown_limit))


BUILTIN_EVALUATORS: dict[str, type[Evaluator]] = {BalancedEvaluator.name: BalancedEvaluator}


def get_evaluator(name: str = "balanced", **params) -> Evaluator:
    try:
        return BUILTIN_EVALUATORS[name](**params)
    except KeyError:
        known = ", ".join(sorted(BUILTIN_EVALUATORS))
        raise ValueError(f"unknown evaluator '{name}'; known evaluators: {known}") from None
