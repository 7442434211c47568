"""Wire models: the single definition of the HTTP API, shared by the service and the client (the events and the
error model, which the engine or the CLI share too, are in ``schema.events`` and ``schema.errors``).

Pure pydantic, so a laptop with only the base install (no Ray, no Numba, no numpy) can import them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from schema.costs import Costs
from schema.job import JobParameters
from schema.research import Baselines, FoldResult, Validation


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobSpec(_Wire, JobParameters):
    """What to mine: the job's parameters (``schema.job``), its dataset, costs and evaluator. Omitted costs and
    evaluator take the service's configured defaults. A stored job's spec has its costs filled in and keeps the
    evaluator as asked; the exact version it was pinned to is ``JobInfo.evaluator_version``."""

    dataset: str = Field(min_length=1, max_length=200, description="dataset name, see GET /v1/datasets")
    costs: Costs | None = None
    evaluator: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,39}(@[0-9A-Za-z]{1,64})?$",
                                  description="evaluator name (its latest version) or exact version id (name@hash); "
                                              "default: the service's default")


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"  # the disk is full, or every worker refuses work (the event says which): it resumes by itself
    CANCELLING = "cancelling"  # only in the answer to a cancel: it is stored, the job stops between batches
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in ENDED


ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED)  # also the types of a log's last event
UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)  # resumed at every start of the service


class BestSoFar(_Wire):
    generation: int
    fitness: float
    strategy: str = Field(description="the genome in one readable line")
    genome: dict[str, Any]
    metrics: dict[str, float]


class Progress(_Wire):
    generation: int = Field(0, description="generations completed")
    generations: int
    evaluated: int = Field(0, description="genomes evaluated in the generation under way")
    population: int
    evaluations: int = Field(0, description="genomes evaluated since the job started")
    validation_done: int = Field(0, description="validation searches finished (random baseline, shuffled copies)")
    validation_searches: int = Field(0, description="validation searches in all: 1 + permutations")


class JobInfo(_Wire):
    id: str
    status: JobStatus
    spec: JobSpec
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    evaluator_version: str = Field(description="the exact evaluator version (name@hash) the job was pinned to at "
                                               "submission, whatever later pushes change")
    progress: Progress
    best: BestSoFar | None = None


class Submitted(_Wire):
    id: str
    status: JobStatus


class CancelAccepted(_Wire):
    """The answer to a cancel: it is stored, and the job stops between batches; its events end with 'cancelled'."""

    id: str
    status: Literal[JobStatus.CANCELLING]


class Trade(_Wire):
    entry_time: int
    exit_time: int
    entry_price: float
    exit_price: float
    units: float
    pnl: float
    exit_reason: str


class EquityCurve(_Wire):
    """Close-marked equity, downsampled to at most a few thousand points for plotting."""

    time: list[int]
    equity: list[float]


class Backtest(_Wire):
    metrics: dict[str, float]
    trades: list[Trade]
    equity: EquityCurve


class BacktestRequest(_Wire):
    """One strategy re-tested on a registered dataset, window and costs (``POST /v1/backtests``).

    ``start`` and ``end`` are ISO-8601 dates or times (naive ones are UTC) or epoch seconds; the window is the bars
    from the first at or after ``start`` up to the last before ``end``, inside the dataset (docs/api.md).
    """

    strategy: dict[str, Any] = Field(description="the genome JSON (README, 'A strategy, in JSON'), or the strategy "
                                                 "document `miner export` writes (docs/strategy.md) as it is: its "
                                                 "`genome` is tested, its costs and dataset are not used")
    dataset: str = Field(min_length=1, max_length=200, description="dataset name, see GET /v1/datasets")
    start: datetime | None = Field(None, description="trade from the first bar at or after this time; default: the "
                                                     "dataset's first bar")
    end: datetime | None = Field(None, description="trade up to the last bar before this time; default: up to the "
                                                   "dataset's last bar")
    costs: Costs | None = Field(None, description="each cost left out takes the service's default, as for a job")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        value = value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
        start = info.data.get("start")
        if info.field_name == "end" and value is not None and start is not None and value <= start:
            raise ValueError(f"must be after start ({start.isoformat()})")
        return value


class BacktestResult(Backtest):
    """A strategy's backtest (metrics, trades, equity curve thinned like a job result's) and what was tested."""

    strategy: str = Field(description="the genome in one readable line")
    genome: dict[str, Any] = Field(description="the genome tested, as the service read it")
    dataset: str
    data_fingerprint: str = Field(description="content hash of the dataset's rows (compare with a job result's)")
    first_time: int = Field(description="epoch seconds of the first bar of the window")
    last_time: int = Field(description="epoch seconds of the last bar of the window")
    bars: int = Field(description="bars in the window")
    costs: Costs = Field(description="the costs used: the request's, each left out being the service's default")


class HallOfFameEntry(_Wire):
    """One of a job's best distinct strategies, ranked on training fitness (the holdout is shown, never ranked on)."""

    fitness: float
    generation: int = Field(description="the generation that found it")
    genome: dict[str, Any]
    strategy: str = Field(description="the genome in one readable line")
    train_metrics: dict[str, float] = Field(description="backtested on the whole training window")
    holdout_metrics: dict[str, float] | None


class JobResult(_Wire):
    """The best strategy of a job, its evidence and its hall of fame; a job that ended early (cancelled, or failed
    after completing a generation) has one too, of the generations it completed."""

    job_id: str
    dataset: str
    strategy: str
    genome: dict[str, Any]
    fitness: float
    train: Backtest
    holdout: Backtest | None
    evaluator_version: str
    seed: int
    data_fingerprint: str
    generations_run: int
    history: list[float]
    folds: list[FoldResult]
    profitable_folds: int
    baselines: Baselines
    validation: Validation
    cancelled: bool = Field(False, description="the job ended early (cancelled, or failed): not validated unless "
                                               "the permutation test had run")
    hall_of_fame: list[HallOfFameEntry] = Field(default_factory=list,
                                                description="the best distinct strategies, best first (the first "
                                                            "is the result's)")


class DatasetInfo(_Wire):
    name: str
    fingerprint: str
    candles: int
    first_time: int
    last_time: int
    bar_seconds: int
    gaps: int
    largest_gap_seconds: int
    source: Literal["data_dir", "upload", "synthetic"]


class NodeInfo(_Wire):
    node_id: str
    address: str = Field(description="the address Ray knows this node by (what the head sees)")
    label: str | None
    cpus: float
    alive: bool
    workers: int
    evaluations: int = Field(0, description="genomes backtested on this node since the coordinator started")
    busy_seconds: float = Field(0.0, description="seconds this node's workers spent backtesting batches since the "
                                                 "coordinator started: its growth over a minute / (60 x workers) is "
                                                 "how busy they are")
    versions: dict[str, str] | None = Field(None, description="python, ray, numba and strategy-miner versions and "
                                                              "the engine code's digest of this node's workers "
                                                              "(None: no worker yet)")
    refused_workers: int = Field(0, description="workers given no work: they run other engine code than the head")
    refused_reason: str | None = Field(None, description="why one of them is refused (then `versions` are its own)")
    refused_fix: str | None = Field(None, description="what makes the refused workers take work again")


class ClusterInfo(_Wire):
    nodes: list[NodeInfo]
    workers: int
    pending_workers: int
    refused_workers: int = Field(0, description="workers given no work: they run other engine code than the head "
                                                "(`miner doctor` names their node)")
    versions: dict[str, str] = Field(default_factory=dict, description="the head's versions (the coordinator's "
                                                                       "process)")
    checkout_engine: str | None = Field(None, description="the digest of the engine code in the head's checkout now: "
                                                          "not versions['engine'] when it was updated after the "
                                                          "service started, which needs a restart")


EVALUATOR_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"  # a name ends up in files, logs and URLs: keep it plain


class EvaluatorPush(_Wire):
    """A new evaluator version: module source defining ``score(m, **params)`` and optional ``PARAMS``."""

    source: str = Field(min_length=1, max_length=200_000)
    params: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")],
                 Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=dict, description="overrides of the module's PARAMS: names of its parameters, finite numbers")
    make_default: bool = Field(False, description="use it for jobs that do not name an evaluator")


class EvaluatorInfo(_Wire):
    name: str
    version: str
    params: dict[str, Any]
    builtin: bool
    default: bool
    created_at: float
