"""An in-memory miner service for client and CLI tests: the HTTP API as an ``httpx.MockTransport`` and the event
stream as a ``MinerClient`` stream opener, answering with the wire models, the event models and the error table.
No Ray, no sockets: a test takes milliseconds.

    fake = FakeService()
    job = fake.add_job(JobStatus.FINISHED)
    MinerClient(fake.url, fake.token, transport=fake.transport, open_stream=fake.open_stream)
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from client import models as wire
from client.export import SCHEMA
from schema import events as ev
from schema.errors import ERRORS, NORMAL_CLOSE, ErrorBody, ErrorKind
from schema.research import Baselines, FoldResult, Validation

METRICS = {"net_pnl": 120.5, "return_pct": 1.2, "trades": 40.0, "win_rate": 0.55, "max_drawdown": 0.08,
           "sharpe": 1.1, "sortino": 1.4, "profit_factor": 1.3, "exposure": 0.4, "avg_trade_return": 0.0003,
           "trade_t_stat": 1.2, "trade_z": 0.9}
GENOME = {"direction": "long", "entry": [], "exit": [], "stop_loss": 0.02, "take_profit": 0.04}
STRATEGY = "LONG when close > sma(20); exit when close < sma(50)"


EVALUATOR = wire.EvaluatorInfo(name="balanced", version="balanced@1", params={"drawdown_limit": 0.3}, builtin=True,
                               default=True, created_at=1.7e9).model_dump(mode="json")
CLUSTER = wire.ClusterInfo(nodes=[wire.NodeInfo(node_id="a" * 40, address="100.64.0.1", label="head", cpus=8.0,
                                                alive=True, workers=7, evaluations=1234)],
                           workers=7, pending_workers=0).model_dump(mode="json")


class Refused(Exception):
    """What a route answers instead: an error of the table (``details``: the fields at fault)."""

    def __init__(self, kind: ErrorKind, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.kind, self.message, self.details = kind, message, details

    @classmethod
    def at(cls, code: str, field: str, problem: str) -> Refused:
        return cls(ERRORS[code], f"{field}: {problem}", [{"field": field, "message": problem}])


def mining_log(spec: wire.JobSpec, ending: ev.EventData | None) -> list[ev.EventData]:
    """What a job of this spec logs, ended by ``ending`` (None: still running)."""
    log: list[ev.EventData] = [ev.JobStarted(population=spec.population, generations=spec.generations,
                                             train_bars=800, holdout_bars=200, data_fingerprint="f1",
                                             evaluator_version="balanced@1", folds=spec.folds,
                                             permutations=spec.permutations)]
    for generation in range(spec.generations):
        log += [ev.GenerationStarted(generation=generation),
                ev.BatchEvaluated(generation=generation, evaluated=spec.population, total=spec.population),
                ev.GenerationBest(generation=generation, fitness=0.1 * generation, best_fitness_so_far=0.1 * generation,
                                  genome=GENOME, metrics=METRICS, strategy=STRATEGY)]
    if spec.permutations:
        searches = 1 + spec.permutations
        log.append(ev.ValidationStarted(searches=searches, permutations=spec.permutations))
        log += [ev.ValidationSearchFinished(kind="random" if i == 0 else "shuffled", index=i, best_fitness=-0.5,
                                            done=i + 1, total=searches) for i in range(searches)]
    return log + ([ending] if ending else [])


def job_result(job_id: str, spec: wire.JobSpec) -> wire.JobResult:
    backtest = wire.Backtest(metrics=METRICS, trades=[], equity=wire.EquityCurve(time=[0, 300], equity=[1e4, 1e4]))
    return wire.JobResult(
        job_id=job_id, dataset=spec.dataset, strategy=STRATEGY, genome=GENOME, fitness=0.4, train=backtest,
        holdout=backtest, evaluator_version="balanced@1", seed=spec.seed, data_fingerprint="f1",
        generations_run=spec.generations, history=[0.1] * spec.generations,
        folds=[FoldResult(start_time=0, end_time=300, bars=200, score=0.3, metrics=METRICS)], profitable_folds=1,
        baselines=Baselines(buy_and_hold_train_pct=2.0, buy_and_hold_holdout_pct=-1.0, budget=100),
        validation=Validation(verdict="no_edge", p_value=0.5, permutations=spec.permutations,
                              copies_best_fitness=[0.5], best_fitness=0.4, strategies_tried=100,
                              meets_min_trades=True, evidence="no evidence of an edge: p = 0.50"))


class FakeService:
    url = "http://miner.test"

    def __init__(self, token: str = "test-token", datasets: tuple[str, ...] = ("synthetic",)):
        self.token = token
        self.datasets = datasets
        self.jobs: dict[str, wire.JobInfo] = {}
        self.logs: dict[str, list[dict]] = {}  # job id -> its log, as stored: {seq, job_id, type, time, data}
        self.results: dict[str, wire.JobResult] = {}
        self.requests: list[httpx.Request] = []
        self.streams = 0  # event streams opened
        self.drop_after: int | None = None  # a stream drops after this many events (None: never)
        self.refusal: Refused | None = None  # answer every request with this error
        self.transport = httpx.MockTransport(self._handle)
        self.listings = {("GET", "/v1/datasets"): lambda: [self._dataset(name) for name in self.datasets],
                         ("GET", "/v1/evaluators"): lambda: [EVALUATOR],
                         ("GET", "/v1/cluster"): lambda: CLUSTER}

    # ---- scenarios -----------------------------------------------------------------------------------------
    def add_job(self, status: wire.JobStatus, **spec_fields) -> str:
        """A job in ``status``, with the log and (finished) the result such a job has."""
        spec = wire.JobSpec(**{"dataset": "synthetic", "population": 8, "generations": 2, "permutations": 1,
                               **spec_fields})
        job_id = f"job{len(self.jobs) + 1}"
        ending = {wire.JobStatus.FINISHED: ev.Finished(best_fitness=0.4, generations_run=spec.generations),
                  wire.JobStatus.FAILED: ev.Failed(error="the coordinator lost the dataset"),
                  wire.JobStatus.CANCELLED: ev.Cancelled(generation=1)}.get(status)
        self.logs[job_id] = []
        for data in mining_log(spec, ending):
            self.log(job_id, data)
        self.jobs[job_id] = wire.JobInfo(id=job_id, status=status, spec=spec, created_at=1.7e9,
                                         evaluator_version="balanced@1",
                                         progress=wire.Progress(generations=spec.generations,
                                                                population=spec.population),
                                         error=ending.error if isinstance(ending, ev.Failed) else None)
        if status is wire.JobStatus.FINISHED:
            self.results[job_id] = job_result(job_id, spec)
        return job_id

    def log(self, job_id: str, data: ev.EventData) -> None:
        seq = len(self.logs[job_id]) + 1
        self.logs[job_id].append(ev.Event(seq=seq, job_id=job_id, time=1.7e9 + seq, data=data).model_dump())

    # ---- HTTP ------------------------------------------------------------------------------------------------
    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        try:
            if self.refusal:
                raise self.refusal
            if request.url.path.startswith("/v1/") and request.headers.get("authorization") != f"Bearer {self.token}":
                raise Refused(ERRORS["unauthorized"], "missing or wrong token")
            status, body = self._route(request)
        except Refused as refused:
            return httpx.Response(refused.kind.status, json=ErrorBody(error=refused.kind.code, message=refused.message,
                                                                      details=refused.details).model_dump())
        return httpx.Response(status, json=body)

    def _route(self, request: httpx.Request) -> tuple[int, object]:
        method, path = request.method, request.url.path
        if (method, path) in self.listings:
            return 200, self.listings[method, path]()
        if (method, path) == ("POST", "/v1/datasets"):
            return 201, self._upload(request.url.params["name"], request.content)
        if method == "PUT" and (name := re.fullmatch(r"/v1/evaluators/([a-z][a-z0-9_]*)", path)):
            return 201, self._evaluator(name[1], json.loads(request.content))
        if (method, path) == ("POST", "/v1/backtests"):
            return 200, self._backtest(json.loads(request.content))
        if (method, path) == ("GET", "/v1/jobs"):
            return 200, [job.model_dump(mode="json") for job in reversed(self.jobs.values())]
        if (method, path) == ("POST", "/v1/jobs"):
            return 202, self._submit(json.loads(request.content))
        job_route = re.fullmatch(r"/v1/jobs/([^/]+)(/result)?", path)
        if not job_route:
            raise Refused(ERRORS["not_found"], f"no such route: {method} {path}")
        job = self._job(job_route[1])
        if (method, job_route[2]) == ("GET", "/result"):
            if job.id not in self.results:
                raise Refused(ERRORS["conflict"], f"job '{job.id}' is {job.status.value}: a result exists only "
                                                  "once it has finished")
            return 200, self.results[job.id].model_dump(mode="json")
        if (method, job_route[2]) == ("GET", None):
            return 200, job.model_dump(mode="json")
        if (method, job_route[2]) == ("DELETE", None):
            if job.status.terminal:
                raise Refused(ERRORS["conflict"], f"job '{job.id}' is already {job.status.value}")
            return 202, wire.CancelAccepted(id=job.id, status=wire.JobStatus.CANCELLING).model_dump(mode="json")
        raise Refused(ERRORS["method_not_allowed"], f"{method} is not allowed on {path}")

    def _submit(self, body: dict) -> dict:
        try:
            spec = wire.JobSpec(**body)
        except ValidationError as exc:
            raise Refused(ERRORS["invalid_request"], str(exc)) from None
        if spec.dataset not in self.datasets:
            raise Refused(ERRORS["not_found"], f"unknown dataset '{spec.dataset}'")
        job_id = self.add_job(wire.JobStatus.FINISHED, **body)
        return wire.Submitted(id=job_id, status=wire.JobStatus.QUEUED).model_dump(mode="json")

    def _backtest(self, body: dict) -> dict:
        """As the service answers: 422 naming the field for a bad request, strategy or window, 404 for an unknown
        dataset (each of the fake's datasets holds 1,000 bars of 300 s from time 0), else the canned metrics."""
        try:
            request = wire.BacktestRequest(**body)
        except ValidationError as exc:
            raise Refused(ERRORS["invalid_request"], str(exc), [{"field": ".".join(map(str, e["loc"])),
                                                                 "message": e["msg"]} for e in exc.errors()]) from None
        strategy, field = request.strategy, "strategy"
        if "schema" in strategy or "genome" in strategy:
            if strategy.get("schema") != SCHEMA:
                raise Refused.at("invalid_request", "strategy.schema", f"a strategy document's schema is '{SCHEMA}'")
            strategy, field = strategy.get("genome"), "strategy.genome"
        if not isinstance(strategy, dict) or strategy.get("direction") not in ("long", "short"):
            raise Refused.at("invalid_request", f"{field}.direction", "Input should be 'long' or 'short'")
        if request.dataset not in self.datasets:
            raise Refused(ERRORS["not_found"], f"unknown dataset '{request.dataset}'; available: "
                                               f"{', '.join(self.datasets)}")
        first, last = (int(t.timestamp()) if t else None for t in (request.start, request.end))
        if first is not None and not 0 <= first <= 299_700:
            raise Refused.at("invalid_data", "start", "is outside the data")
        if last is not None and not 0 < last <= 300_000:
            raise Refused.at("invalid_data", "end", "is outside the data")
        lo, hi = (first or 0) // 300, -(-(last or 300_000) // 300)
        if hi - lo < 100:
            raise Refused.at("invalid_data", "end", f"the window holds {hi - lo} bars; a backtest needs at least 100")
        given = request.costs.model_dump(exclude_unset=True) if request.costs else {}
        return wire.BacktestResult(metrics=METRICS, trades=[], equity=wire.EquityCurve(time=[lo * 300], equity=[1e4]),
                                   strategy=STRATEGY, genome=strategy, dataset=request.dataset, data_fingerprint="f1",
                                   first_time=lo * 300, last_time=(hi - 1) * 300, bars=hi - lo,
                                   costs=wire.Costs(**given)).model_dump(mode="json")

    def _dataset(self, name: str) -> dict:
        return wire.DatasetInfo(name=name, fingerprint="f1", candles=1000, first_time=0, last_time=299_700,
                                bar_seconds=300, gaps=0, largest_gap_seconds=0, source="synthetic").model_dump()

    def _upload(self, name: str, content: bytes) -> dict:
        """A CSV is accepted when its header names the candle columns; any other is refused as the service does."""
        if not content.lower().startswith(b"timestamp,open,high,low,close,volume"):
            raise Refused(ERRORS["invalid_data"], f"upload '{name}': missing column(s) timestamp; row 1")
        self.datasets += (name,)
        return self._dataset(name)

    def _evaluator(self, name: str, body: dict) -> dict:
        push = wire.EvaluatorPush(**body)
        if "def score" not in push.source:
            raise Refused(ERRORS["invalid_data"], f"evaluator '{name}' defines no score(m, **params)")
        return {**EVALUATOR, "name": name, "version": f"{name}@2", "builtin": False, "default": push.make_default}

    def _job(self, job_id: str) -> wire.JobInfo:
        if job_id not in self.jobs:
            raise Refused(ERRORS["not_found"], f"unknown job '{job_id}'")
        return self.jobs[job_id]

    # ---- the event stream --------------------------------------------------------------------------------
    @contextmanager
    def open_stream(self, url: str, headers: dict[str, str]):
        """``MinerClient(open_stream=...)``: the log after ``since``, closed as the service closes it."""
        self.streams += 1
        parts = urlsplit(url)
        job_id = re.fullmatch(r"/v1/jobs/([^/]+)/events", parts.path)[1]
        since = int(parse_qs(parts.query)["since"][0])
        yield _Stream(self, job_id, since, headers.get("Authorization"))


class _Stream:
    def __init__(self, service: FakeService, job_id: str, since: int, authorization: str | None):
        self.service, self.job_id, self.since, self.authorization = service, job_id, since, authorization
        self.close_code: int | None = None

    def _refuse(self, kind: ErrorKind, reason: str) -> ConnectionClosedError:
        return ConnectionClosedError(Close(kind.close_code, reason), None)

    def __iter__(self):
        service = self.service
        if service.refusal:
            raise self._refuse(service.refusal.kind, service.refusal.message)
        if self.authorization != f"Bearer {service.token}":
            raise self._refuse(ERRORS["unauthorized"], "missing or wrong token")
        if self.job_id not in service.jobs:
            raise self._refuse(ERRORS["not_found"], f"unknown job '{self.job_id}'")
        for sent, entry in enumerate(e for e in service.logs[self.job_id] if e["seq"] > self.since):
            if sent == service.drop_after:
                raise ConnectionClosedError(None, None)  # the network dropped: no close frame
            yield json.dumps(entry)
        if service.jobs[self.job_id].status.terminal:
            self.close_code = NORMAL_CLOSE


def hall_of_fame(count: int) -> list[wire.HallOfFameEntry]:
    """``count`` distinct strategies, best first, with a holdout."""
    return [wire.HallOfFameEntry(fitness=0.4 - 0.1 * rank, generation=rank, genome={**GENOME, "stop_loss": 0.01 * rank},
                                 strategy=f"{STRATEGY} (stop {rank} %)", train_metrics=METRICS,
                                 holdout_metrics={**METRICS, "return_pct": -0.5 * rank})
            for rank in range(count)]


def add_ended_early(fake: FakeService, status: wire.JobStatus, **spec_fields) -> str:
    """A job cancelled (or failed) after completing a generation, with the result such a job keeps."""
    job_id = fake.add_job(status, **spec_fields)
    ended = job_result(job_id, fake.jobs[job_id].spec)
    validation = ended.validation.model_copy(update={"verdict": "not_validated", "p_value": None,
                                                     "evidence": "not validated: the job ended before the "
                                                                 "permutation test ran; 16 strategies tried"})
    fake.results[job_id] = ended.model_copy(update={"cancelled": True, "generations_run": 1, "validation": validation,
                                                    "hall_of_fame": hall_of_fame(3)})
    return job_id
