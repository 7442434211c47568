"""MinerAPI: the stateless FastAPI ingress (HTTP + WebSocket) in front of the coordinator.

It authenticates, validates with the wire models, forwards to the coordinator and maps errors to
JSON answers in one place. It keeps no job state, so it can be redeployed or restarted while jobs run.

No ``from __future__ import annotations`` here: Serve rewrites the signatures of class-based routes, and
string annotations then fail to resolve (a WebSocket parameter silently becomes a query parameter). Helpers its
methods call are defined above the class: the deployment is pickled where it is declared, and a name defined below
it is missing in the replica (NameError at the first request).
"""


import asyncio
import hmac
import logging

import ray
from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from client import models as wire
from schema.errors import ERRORS, HTTP_ERROR, NORMAL_CLOSE, SERVICE_FAILED_CLOSE, ErrorBody, ErrorKind
from schema.events import Event
from serve_app import backtests, dashboard
from serve_app.config import COORDINATOR_NAME, NAMESPACE, ON_HEAD_NODE, RuntimeConfig, ServiceSettings
from serve_app.coordinator import MinerCoordinator
from serve_app.errors import CannotStart, MinerError, Unavailable
from serve_app.mapping import job_spec_schema

log = logging.getLogger("ray.serve")
UNAVAILABLE = (ActorDiedError, ActorUnavailableError, GetTimeoutError)

app = FastAPI(title="Strategy miner", version="1",
              description="Submit GA mining jobs, follow them live, fetch the best strategies. "
                          "Every /v1 route needs `Authorization: Bearer <token>`.")


def _error(status: int, code: str, message: str, details: list | None = None) -> JSONResponse:
    body = ErrorBody(error=code, message=message, details=details)
    return JSONResponse(status_code=status, content=body.model_dump())


def _answer(kind: ErrorKind, message: str, details: list | None = None) -> JSONResponse:
    return _error(kind.status, kind.code, message, details)


@app.exception_handler(MinerError)
async def _miner_error(request: Request, exc: MinerError) -> JSONResponse:
    return _answer(exc.kind, exc.message, getattr(exc, "details", None))  # details: the fields at fault, if named


def _refused_field(error: dict) -> dict[str, str]:
    """One validation error as the field at fault and why; a body that is not JSON is the body's fault (its ``loc``
    ends with the character where the JSON went wrong, not a field)."""
    if error["type"] == "json_invalid":
        why = error.get("ctx", {}).get("error", error["msg"])
        return {"field": "body", "message": f"not valid JSON at character {error['loc'][-1]}: {why}"}
    return {"field": ".".join(str(p) for p in error["loc"] if p != "body"), "message": error["msg"]}


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [_refused_field(e) for e in exc.errors()]
    summary = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details)
    return _answer(ERRORS["invalid_request"], summary, details)


# the codes of the refusals Starlette itself raises (or the ingress raises as Starlette's HTTPException)
FRAMEWORK_CODES = {ERRORS[code].status: code for code in
                   ("unauthorized", "forbidden", "not_found", "method_not_allowed", "too_large")}


@app.exception_handler(HTTPException)
async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    code = FRAMEWORK_CODES.get(exc.status_code, HTTP_ERROR)
    message = str(exc.detail)
    if message == "Not Found":  # Starlette's words for a path no route matches
        message = f"no such route: {request.method} {request.url.path} (the API is listed at /docs)"
    elif message == "Method Not Allowed":
        message = f"{request.method} is not allowed on {request.url.path} (the API is listed at /docs)"
    return _error(exc.status_code, code, message)


@app.exception_handler(Exception)
async def _internal(request: Request, exc: Exception) -> JSONResponse:
    """A bug still answers in the one error model; Starlette re-raises it afterwards, so Serve logs the traceback."""
    return _answer(ERRORS["internal"], f"the service failed on this request ({type(exc).__name__}); "
                                       "the traceback is in the service log")


def _token_matches(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


WRONG_TOKEN = ("missing or wrong token: send 'Authorization: Bearer <token>' (the token is the file token in the "
               "service's state folder on the head node: ~/.miner unless it was started with --state-dir)")


def require_token(request: Request) -> None:
    if not _token_matches(request.app.state.token, _bearer(request.headers.get("authorization"))):
        raise HTTPException(401, WRONG_TOKEN)


def require_admin(request: Request) -> None:
    """Pushing an evaluator runs its code on the cluster: only the admin token may."""
    presented = _bearer(request.headers.get("authorization"))
    admin = request.app.state.admin_token
    if admin and _token_matches(admin, presented):
        return
    if not _token_matches(request.app.state.token, presented):
        raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer <token>'")
    if not admin:
        raise HTTPException(403, "pushing evaluators is switched off: the service has no admin token configured")
    raise HTTPException(403, "pushing evaluators runs code on the cluster and needs the admin token")


def start_failure(exc: BaseException) -> str | None:
    """What stopped the coordinator's constructor (its last traceback line, e.g. the job store refused as damaged,
    naming the file and the backup to restore); None for any other outage."""
    if not (isinstance(exc, RayActorError) and exc.actor_init_failed):
        return None
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"the service cannot start: {lines[-1] if lines else 'its coordinator failed to start'}"


async def call(ref):
    """Await a coordinator call, turning its domain errors back into themselves and outages into 503."""
    try:
        return await ref
    except RayTaskError as exc:
        if isinstance(exc.cause, MinerError):
            raise exc.cause from None
        raise
    except UNAVAILABLE as exc:
        if reason := start_failure(exc):
            raise CannotStart(reason) from None
        raise Unavailable("the coordinator is restarting; retry in a few seconds") from exc


auth = [Depends(require_token)]
V1_ERRORS = ("unauthorized", "internal", "unavailable", "cannot_start")  # any /v1 route: it asks the coordinator
BODY_ERRORS = ("too_large", "invalid_request")  # any route that reads a body
JOB_ERRORS = (*V1_ERRORS, "not_found", "invalid_request")  # any route of one job (FastAPI validates its path)


def errors(*codes: str) -> dict[int | str, dict]:
    """A route's ``responses=``: every error it can answer, each status with its codes, all in the one model."""
    statuses: dict[int, list[str]] = {}
    for code in codes:
        statuses.setdefault(ERRORS[code].status, []).append(code)
    return {status: {"model": ErrorBody, "description": " or ".join(f"`{code}`" for code in names)}
            for status, names in sorted(statuses.items())}


class Gate:
    """Refuses a wrong token and an oversized body before any route reads the body.

    FastAPI reads and parses a JSON body before it runs a route's dependencies, so a token checked only there
    lets anyone make the service swallow 200 MB; FastAPI's own ``max_body_size`` is fixed at import and answers in
    plain text, while these limits come from the deployed args. The gate lets either token through; each route's
    dependency then says which one it needs. A declared length over the limit is refused unread; a body without
    one (chunked) is counted as it is read and refused once it passes the limit.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        state = request.app.state
        presented = _bearer(request.headers.get("authorization"))
        if request.url.path.startswith("/v1/") and not any(
                token and _token_matches(token, presented) for token in (state.token, state.admin_token)):
            return await _answer(ERRORS["unauthorized"], WRONG_TOKEN)(scope, receive, send)
        what, limit, key = _body_limit(request, state.settings)
        words = f"the limit is {limit / 1e6:g} MB (args {key})"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await _answer(ERRORS["too_large"], f"{what} is {int(declared) / 1e6:.1f} MB; {words}")(
                scope, receive, send)
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > limit:
                raise HTTPException(413, f"{what} passed {limit / 1e6:g} MB while being read; {words}")
            return message

        await self.app(scope, counted, send)


def _body_limit(request: Request, settings: ServiceSettings) -> tuple[str, int, str]:
    """(what the body is, its limit in bytes, the setting): uploads may be as large as a dataset, the rest small."""
    if request.method == "POST" and request.url.path == "/v1/datasets":
        return "the upload", int(settings.max_upload_mb * 1e6), "max_upload_mb"
    return "the request body", int(settings.max_body_mb * 1e6), "max_body_mb"


app.add_middleware(Gate)
app.include_router(dashboard.pages)
app.include_router(dashboard.routes, dependencies=auth, responses=errors(*V1_ERRORS))


async def _refuse(websocket: WebSocket, kind: ErrorKind, reason: str) -> None:
    """Close an event stream with the error's close code; the reason (at most 123 bytes on the wire) names it."""
    await websocket.close(code=kind.close_code, reason=reason[:120])


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it leaves, so a close frame or a dropped connection ends
    the stream at once instead of at the next event sent, which may be minutes away."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _first_of(*steps) -> None:
    """Run the coroutines together until the first one ends, then cancel the others; re-raise what it raised."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@serve.deployment(ray_actor_options={"num_cpus": 0, "resources": ON_HEAD_NODE}, max_ongoing_requests=600,
                  health_check_period_s=10)
@serve.ingress(app)
class MinerAPI:
    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        app.state.settings = settings
        app.state.token = settings.api_token
        app.state.admin_token = settings.admin_api_token
        self.runtime = RuntimeConfig()  # replaced by reconfigure() with the deployed user_config
        self.followers = 0
        self.coordinator = MinerCoordinator.options(
            name=COORDINATOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            resources=ON_HEAD_NODE).remote(settings.model_dump())

    async def reconfigure(self, user_config: dict) -> None:
        """Also the start-up check: Serve calls this while the replica starts, so a coordinator that cannot start
        (a damaged or lost job store) fails the deploy with its reason (``serve status``) instead of a service that
        answers 503 to everything."""
        runtime = RuntimeConfig(**user_config)
        self.runtime = runtime
        try:
            await self.coordinator.configure.remote(runtime.model_dump())
        except RayActorError as exc:
            if reason := start_failure(exc):
                raise RuntimeError(reason) from None
            raise

    async def check_health(self) -> None:
        """Also wakes a restarted coordinator so it resumes unfinished jobs without waiting for a client."""
        try:
            await self.coordinator.ping.remote()
        except UNAVAILABLE:
            log.warning("coordinator unavailable during health check; it restarts by itself")

    @app.get("/healthz", tags=["service"], responses=errors("internal"))
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/v1/cluster", dependencies=auth, tags=["service"], responses=errors(*V1_ERRORS))
    async def cluster(self) -> wire.ClusterInfo:
        return wire.ClusterInfo(**await call(self.coordinator.cluster.remote()))

    @app.get("/v1/datasets", dependencies=auth, tags=["datasets"], responses=errors(*V1_ERRORS))
    async def datasets(self) -> list[wire.DatasetInfo]:
        return [wire.DatasetInfo(**d) for d in await call(self.coordinator.list_datasets.remote())]

    @app.post("/v1/datasets", dependencies=auth, status_code=201, tags=["datasets"],
              responses=errors(*V1_ERRORS, *BODY_ERRORS, "conflict", "invalid_data"),
              openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}},
                                             "required": True}})
    async def upload_dataset(self, request: Request,
                             name: str = Query(..., description="name to mine it under")) -> wire.DatasetInfo:
        """Upload a CSV (timestamp, open, high, low, close, volume) as the raw request body.

        Its size is capped by ``Gate`` (args ``max_upload_mb``) before and while it is read.
        """
        body = await request.body()
        return wire.DatasetInfo(**await call(self.coordinator.upload_dataset.remote(name, body)))

    @app.get("/v1/job-spec", dependencies=auth, tags=["jobs"], responses=errors("unauthorized", "internal"))
    async def job_spec(self) -> dict:
        """The JSON schema of ``JobSpec`` with this service's limits and default costs: every field's bounds and
        default from their one definition, for a form (the dashboard's) that must not keep a copy of them."""
        return job_spec_schema(self.runtime)

    @app.post("/v1/jobs", dependencies=auth, status_code=202, tags=["jobs"],
              responses=errors(*V1_ERRORS, *BODY_ERRORS, "not_found", "conflict", "invalid_data", "too_many"))
    async def submit(self, spec: wire.JobSpec, response: Response,
                     idempotency_key: str | None = Header(
                         None, alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
                         description="any unique string (a UUID): the same key with the same body returns the job "
                                     "it created, never a second one; with a different body, 409")) -> wire.Submitted:
        """Queue a mining job. It is stored before this answer, so an accepted job is never lost.

        Send an ``Idempotency-Key`` to retry safely after a lost answer: a repeat answers 202 again with the same job
        (its current status) and the header ``Idempotent-Replayed: true``.
        """
        # only the fields sent: a cost left out is the service's default (``mapping.resolve_spec``)
        sent = spec.model_dump(mode="json", exclude_unset=True)
        answer = await call(self.coordinator.submit.remote(sent, idempotency_key))
        if answer.pop("replayed"):
            response.headers["Idempotent-Replayed"] = "true"
        return wire.Submitted(**answer)

    @app.get("/v1/jobs", dependencies=auth, tags=["jobs"], responses=errors(*V1_ERRORS, "invalid_request"))
    async def jobs(self, limit: int = Query(100, ge=1, le=1000)) -> list[wire.JobInfo]:
        return [wire.JobInfo(**j) for j in await call(self.coordinator.jobs.remote(limit))]

    @app.get("/v1/jobs/{job_id}", dependencies=auth, tags=["jobs"], responses=errors(*JOB_ERRORS))
    async def job(self, job_id: str) -> wire.JobInfo:
        return wire.JobInfo(**await call(self.coordinator.job.remote(job_id)))

    @app.get("/v1/jobs/{job_id}/result", dependencies=auth, tags=["jobs"],
             responses=errors(*JOB_ERRORS, "conflict"))
    async def result(self, job_id: str) -> wire.JobResult:
        return wire.JobResult(**await call(self.coordinator.result.remote(job_id)))

    @app.delete("/v1/jobs/{job_id}", dependencies=auth, status_code=202, tags=["jobs"],
                responses=errors(*JOB_ERRORS, "conflict"))
    async def cancel(self, job_id: str) -> wire.CancelAccepted:
        """Stop a job between batches; its events end with 'cancelled'."""
        return wire.CancelAccepted(**await call(self.coordinator.cancel.remote(job_id)))

    @app.post("/v1/backtests", dependencies=auth, tags=["backtests"],
              responses=errors(*V1_ERRORS, *BODY_ERRORS, "not_found", "invalid_data"))
    async def backtest(self, request: wire.BacktestRequest) -> wire.BacktestResult:
        """Backtest one strategy on a registered dataset, window and costs: metrics, trades and the equity curve.

        ``strategy`` is the genome JSON or the strategy document ``miner export`` writes. A worker of the pool runs
        it (milliseconds), beside the jobs' batches. 404 for an unknown dataset; 422 naming the field for a bad
        strategy, a time outside the dataset or a window of fewer than 100 bars.
        """
        backtests.genome_of(request.strategy)  # a bad strategy is refused here, naming its fields
        sent = request.model_dump(mode="json", exclude_unset=True)  # costs left out: the service's (as for a job)
        return wire.BacktestResult(**await call(self.coordinator.backtest.remote(sent)))

    @app.get("/v1/evaluators", dependencies=auth, tags=["evaluators"], responses=errors(*V1_ERRORS))
    async def evaluators(self) -> list[wire.EvaluatorInfo]:
        """Every evaluator version the service knows; ``default`` marks the one jobs get unless they ask."""
        return [wire.EvaluatorInfo(**e) for e in await call(self.coordinator.list_evaluators.remote())]

    @app.put("/v1/evaluators/{name}", dependencies=[Depends(require_admin)], status_code=201, tags=["evaluators"],
             responses=errors(*V1_ERRORS, *BODY_ERRORS, "forbidden", "invalid_data"))
    async def push_evaluator(self, push: wire.EvaluatorPush,
                             name: str = Path(pattern=wire.EVALUATOR_NAME_PATTERN,
                                              description="lower-case letters, digits and _, starting with a "
                                                          "letter, at most 40")) -> wire.EvaluatorInfo:
        """Add a version of an evaluator (admin token: this runs the module's code on the cluster).

        It is compiled, then tried on sample backtests in one worker; a module that fails to import,
        raises, or returns non-finite or wrongly shaped scores is refused (422) with file, line and
        message, and nothing changes. Running jobs keep the version they started with.
        """
        return wire.EvaluatorInfo(**await call(self.coordinator.push_evaluator.remote(
            name, push.source, push.params, push.make_default)))

    @app.websocket("/v1/jobs/{job_id}/events")
    async def events(self, websocket: WebSocket, job_id: str, since: str = "0", token: str | None = None,
                     ticket: str | None = None) -> None:
        """Replay stored events with seq > since, then stream live ones; closes after the terminal event.

        Authenticate with the Authorization header, or ``?ticket=`` (from ``POST /v1/ws-ticket``) where a client
        cannot set headers; ``?token=`` stays for old clients.
        Refusals close the socket with a 44xx code whose reason names the problem (see docs/api.md).
        """
        await websocket.accept()  # accept first: a close before accept reaches clients as a bare HTTP 403
        presented = _bearer(websocket.headers.get("authorization")) or token
        if not (_token_matches(websocket.app.state.token, presented) or dashboard.TICKETS.redeem(ticket)):
            await _refuse(websocket, ERRORS["unauthorized"], "missing or wrong token or ticket")
            return
        if not (since.isascii() and since.isdigit() and int(since) < 2**63):  # "²" is a digit to isdigit()
            await _refuse(websocket, ERRORS["bad_request"], f"since must be a whole number >= 0, got '{since[:40]}'")
            return
        try:
            await call(self.coordinator.job.remote(job_id))
        except MinerError as exc:
            await _refuse(websocket, exc.kind, exc.message)
            return
        limit = self.runtime.max_followers
        if self.followers >= limit:
            await _refuse(websocket, ERRORS["too_many"], f"too many followers: the limit is {limit} "
                                                         "(user_config max_followers); retry later")
            return
        self.followers += 1
        try:
            await _first_of(self._stream(websocket, job_id, int(since)), _until_disconnect(websocket))
        finally:
            self.followers -= 1

    async def _stream(self, websocket: WebSocket, job_id: str, since: int) -> None:
        try:
            while True:
                batch = await self._poll(job_id, since)
                for event in batch["events"]:
                    await websocket.send_text(Event(**event).model_dump_json())
                    since = event["seq"]
                if batch["ended"]:  # the terminal event has been sent (now or on an earlier connection)
                    await websocket.close(code=NORMAL_CLOSE)
                    return
        except WebSocketDisconnect:
            return
        except MinerError as exc:
            await websocket.close(code=SERVICE_FAILED_CLOSE, reason=exc.message[:120])

    async def _poll(self, job_id: str, since: int) -> dict:
        ref = self.coordinator.events.remote(job_id, since)
        try:
            return await call(ref)
        except asyncio.CancelledError:
            ray.cancel(ref)  # the follower left: end the coordinator's long poll now, not up to 20 s later
            raise
