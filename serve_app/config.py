"""Typed service settings: the app's ``args`` (fixed at deploy) and ``user_config`` (live, via reconfigure).

Unknown keys are rejected, so a typo in deploy/config.yaml fails ``serve deploy`` with a message
instead of being silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from client.models import Costs
from engine.evaluator import DEFAULT_EVALUATOR

COORDINATOR_NAME = "miner-coordinator"
NAMESPACE = "miner"
# Ray gives the head node this resource. The coordinator and the ingress ask for a sliver of it: the job store,
# uploads and token files are on the head laptop's disk, and losing the other laptop must not take them down.
ON_HEAD_NODE = {"node:__internal_head__": 0.001}
# Ray sends a call's argument or answer under this size inline with the call; a larger one goes through the object
# store, which on these machines more than doubled a call's round trip (2.7 -> 6.8 ms at 104 KB). Ray's default is
# 100 KiB; every way of starting the head (deploy/start-head.sh, serve_app.local, the tests' cluster) raises it for the
# whole cluster (a node that joins takes the head's system config), so that one call can carry several islands'
# epochs (docs/performance.md). On a cluster started without it, larger calls are only slower.
INLINE_OBJECT_BYTES = 1 << 20
RAY_SYSTEM_CONFIG = {"max_direct_call_object_size": INLINE_OBJECT_BYTES}


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoolSettings(_Config):
    workers_per_label: dict[str, int] = Field(
        default_factory=dict,
        description="workers on each node carrying this custom resource (e.g. head: 12, air: 10); "
                    "nodes without a listed label get one worker per CPU")
    batch_target_s: float = Field(0.1, gt=0, le=10, description="aim for this much kernel time per call")
    batch_timeout_s: float = Field(60.0, gt=0, description="resend a batch to another worker after this long")
    calls_per_worker: int = Field(2, ge=1, le=8, description="batches sent to a worker at once: the next waits in its "
                                                             "queue, so the worker never waits on a round trip")
    refresh_interval_s: float = Field(5.0, gt=0, description="how often to look for joined or lost nodes")


class BackupSettings(_Config):
    """Online backups of the job store (``serve_app.backups``), beside it in ``backups/``."""

    interval_h: float = Field(1.0, gt=0, le=168, description="hours between backups (fractions allowed), counted "
                                                             "from the newest one, so restarts add none")
    keep: int = Field(6, ge=1, le=1000, description="newest backups kept; each is about the size of the store")


class EvaluatorLimits(_Config):
    """Limits on pushed evaluator code, which runs only in sandbox processes (``serve_app.sandbox``)."""

    memory_mb: int = Field(2048, ge=128, le=1_048_576, description="memory a sandbox process may allocate; more "
                                                                   "fails the batch (or the push)")
    batch_s: float = Field(30.0, gt=0, le=3600, description="wall clock for scoring one batch (all its folds), "
                                                            "or for a push's whole trial; longer fails it. Keep it "
                                                            "below pool.batch_timeout_s, or a hung batch is also "
                                                            "sent to a second worker first")


class RuntimeConfig(_Config):
    """``user_config`` of the MinerAPI deployment: applied in place by ``reconfigure``."""

    pool: PoolSettings = PoolSettings()
    default_costs: Costs = Costs()
    default_evaluator: str = Field(DEFAULT_EVALUATOR, description="evaluator for jobs that name none")
    default_evaluator_params: dict[str, float] = Field(default_factory=dict,
                                                       description="overrides of that evaluator's PARAMS")
    max_running_jobs: int = Field(4, ge=1, le=64, description="jobs mined at once; the rest wait queued")
    checkpoint_every_s: float = Field(
        2.0, ge=0, le=3600, description="a running job's search is checkpointed at most this often (and after its "
                                        "last generation): a restart mines again at most this much of it")
    validation_concurrency: int = Field(
        4, ge=1, le=64, description="validation searches of one job run at once; each holds a shuffled copy's "
                                    "indicator tables in the object store (~30 MB for the BTC file)")
    max_unfinished_jobs: int = Field(100, ge=1, le=10_000,
                                     description="queued plus running jobs; a submission beyond it gets 429")
    max_population: int = Field(20_000, ge=4, le=100_000, description="largest population a job may ask for")
    max_generations: int = Field(10_000, ge=1, le=100_000, description="most generations a job may ask for")
    max_followers: int = Field(100, ge=1, le=500,
                               description="open event WebSockets per ingress replica; more are closed with 4429")
    backups: BackupSettings = BackupSettings()
    evaluator_limits: EvaluatorLimits = EvaluatorLimits()


class ServiceSettings(_Config):
    """``args`` of the application (see ``serve_app.app:build_app``)."""

    store_path: str = Field("~/.miner/miner.db", description="SQLite job store on the head node")
    data_dir: str | None = Field(None, description="folder of CSV/Parquet candle files offered as datasets")
    upload_dir: str = Field("~/.miner/uploads", description="where uploaded datasets are kept")
    max_upload_mb: float = Field(50.0, gt=0, description="largest dataset upload; larger gets 413")
    max_body_mb: float = Field(1.0, gt=0, description="largest body of any other request (job specs, evaluator "
                                                       "pushes); larger gets 413 before it is read")
    token: str | None = Field(None, description="API bearer token; default: $MINER_TOKEN, then token_file")
    token_file: str = Field("~/.miner/token", description="file holding the API token (deploy/start-head.sh writes it)")
    admin_token: str | None = Field(None, description="token allowed to push evaluators (code execution on the "
                                                      "cluster); default: $MINER_ADMIN_TOKEN, then admin_token_file")
    admin_token_file: str = Field("~/.miner/admin_token")
    host: str = "127.0.0.1"
    port: int = 8000

    @model_validator(mode="after")
    def _token_required(self) -> ServiceSettings:
        if not self.api_token:
            raise ValueError(f"no API token: set 'token' in the app args, MINER_TOKEN on the head node, or write "
                             f"one to {self.token_file} (deploy/start-head.sh generates it)")
        return self

    def _secret(self, value: str | None, variable: str, file: str) -> str | None:
        if value or os.environ.get(variable):
            return value or os.environ.get(variable)
        path = self.path(file)
        if not path.is_file():
            return None
        return path.read_text().strip() or None

    @property
    def api_token(self) -> str | None:
        return self._secret(self.token, "MINER_TOKEN", self.token_file)

    @property
    def admin_api_token(self) -> str | None:
        """None: pushing evaluators is switched off."""
        return self._secret(self.admin_token, "MINER_ADMIN_TOKEN", self.admin_token_file)

    def path(self, value: str) -> Path:
        return Path(value).expanduser()
