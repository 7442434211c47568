"""`miner`: drive a miner service from any laptop. HTTP and WebSocket only; no Ray needed.

Exit codes: 0 ok; 2 the request is wrong (a bad flag or value, a wrong token, an unknown job or dataset, a
conflict, a refused upload); 3 the service could not serve it (unreachable, timed out, too busy, failed); 4 the job
failed or was cancelled where a finished job was needed. An error is one line on stderr.

JOB is a job id or the start of one (as long as it names a single job).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.table import Table

from client import export
from client import models as wire
from client.api import MinerClient, StreamOpener, websocket_stream
from client.display import METRIC_FORMATS, backtest_table, follow, print_result
from client.doctor import diagnose
from client.errors import MinerClientError, NotFoundError, ServiceError
from client.settings import ConfigError, resolve
from schema.errors import ExitCode, exit_code_for

MAX_LISTED = 1000  # the most jobs GET /v1/jobs lists (the service's cap on ?limit)
PIPED_WIDTH = 100_000  # piped output: wide enough that no table is ever cut or wrapped


class UsageError(Exception):
    """Bad input caught before talking to the service."""


class JobUnsuccessful(Exception):
    """The job failed or was cancelled where a finished job was needed."""


def _unsuccessful(status: wire.JobStatus) -> bool:
    return status.terminal and status is not wire.JobStatus.FINISHED


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(title: str, *columns: str) -> Table:
    """A table that folds a long cell on a narrow terminal instead of cutting it with '…'."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _print_json(data: BaseModel | list[BaseModel]) -> None:
    plain = [item.model_dump(mode="json") for item in data] if isinstance(data, list) else data.model_dump(mode="json")
    print(json.dumps(plain, indent=2))


def _job_id(client: MinerClient, text: str) -> str:
    """The job a JOB argument names: its id, or the start of exactly one listed job's id."""
    if not text:
        raise UsageError("JOB is empty: give a job id or its first characters (miner jobs lists them)")
    try:
        return client.job(text).id
    except NotFoundError:
        pass
    matches = [job.id for job in client.jobs(MAX_LISTED) if job.id.startswith(text)]
    if not matches:
        raise UsageError(f"no job {text!r}: no job id is or starts with it (miner jobs lists them)")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise UsageError(f"job {text!r} is ambiguous: {len(matches)} job ids start with it ({shown})")
    return matches[0]


# ---- submit's flags: one per JobSpec field, named, bounded and worded from the model ------------------------

FLAG_NAMES = {"holdout_fraction": "--holdout"}  # any other field: --its-name
HELP = {"dataset": "dataset name (miner datasets lists them)",
        "evaluator": "evaluator name (its latest version) or exact version id (name@hash)"}  # else: the description
SERVICE_DEFAULT = "the service's default"


@dataclass(frozen=True)
class SpecFlag:
    """A flag of `miner submit` and the JobSpec field it sets: ``loc`` is its place in the spec."""

    loc: tuple[str, ...]
    field: FieldInfo

    @property
    def dest(self) -> str:
        return self.loc[-1]

    @property
    def flag(self) -> str:
        return FLAG_NAMES.get(self.dest, "--" + self.dest.replace("_", "-"))

    @property
    def is_cost(self) -> bool:
        return self.loc[0] == "costs"

    def help(self) -> str:
        default = self.field.default
        shown = SERVICE_DEFAULT if self.is_cost or default is None else f"{default:g}" if isinstance(
            default, float) else str(default)
        required = self.field.is_required()
        words = f"{HELP.get(self.dest) or self.field.description}{'' if required else f' (default: {shown})'}"
        return words.replace("%", "%%")  # argparse formats help with %

    def rule(self) -> str | None:
        """The field's bounds in words, e.g. 'must be between 0 and 0.5' (None: it has none)."""
        limits = {name: getattr(m, name) for m in self.field.metadata
                  for name in ("ge", "le", "min_length", "max_length") if getattr(m, name, None) is not None}
        if "max_length" in limits:
            return f"must be {limits.get('min_length', 0)} to {limits['max_length']} characters"
        if "ge" in limits and "le" in limits:
            return f"must be between {limits['ge']:g} and {limits['le']:g}"
        return None


SPEC_FLAGS = sorted([SpecFlag((name,), info) for name, info in wire.JobSpec.model_fields.items() if name != "costs"]
                    + [SpecFlag(("costs", name), info) for name, info in wire.Costs.model_fields.items()],
                    key=lambda spec_flag: not spec_flag.field.is_required())  # --dataset first


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shlex.quote(text)} is not a whole number") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shlex.quote(text)} is not a number") from None


def _add_spec_flag(parser: argparse.ArgumentParser, spec_flag: SpecFlag) -> None:
    annotation = spec_flag.field.annotation
    kinds: dict[str, Any] = {}
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = [member.value for member in annotation]
        kinds = {"type": str.upper, "choices": choices, "metavar": "|".join(choices)}
    elif annotation in (int, float):
        kinds = {"type": _whole_number if annotation is int else _number}
    parser.add_argument(spec_flag.flag, dest=spec_flag.dest, required=spec_flag.field.is_required(),
                        help=spec_flag.help(), **kinds)


def _nested(given: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """Request fields from flag values keyed by their place in the request: ("seed",) or ("costs", "fee_bps")."""
    fields: dict[str, Any] = {}
    for loc, value in given.items():
        if len(loc) == 1:
            fields[loc[0]] = value
        else:
            fields.setdefault(loc[0], {})[loc[1]] = value
    return fields


def _spec(args) -> wire.JobSpec:
    """The spec of the flags given (those not given are left to the service); a value out of bounds is refused in
    the flag's words."""
    given = {spec_flag.loc: getattr(args, spec_flag.dest) for spec_flag in SPEC_FLAGS
             if getattr(args, spec_flag.dest) is not None}
    fields = _nested(given)
    try:
        return wire.JobSpec(**fields)
    except ValidationError as exc:
        by_loc = {spec_flag.loc: spec_flag for spec_flag in SPEC_FLAGS}
        problems = []
        for error in exc.errors():
            spec_flag = by_loc.get(tuple(error["loc"]))
            if spec_flag is None:
                problems.append(error["msg"])
            else:
                value = shlex.quote(str(given[spec_flag.loc]))
                problems.append(f"{spec_flag.flag} {value}: {spec_flag.rule() or error['msg']}")
        raise UsageError("; ".join(problems)) from None


# ---- commands ---------------------------------------------------------------------------------------------

def cmd_submit(client: MinerClient, args, console: Console) -> int:
    spec = _spec(args)
    job = client.submit(spec)
    console.print(f"submitted job [bold]{job.id}[/bold] ({spec.population} x {spec.generations} on {spec.dataset})")
    return _follow_to_end(client, job.id, console) if args.follow else ExitCode.OK


def _follow_to_end(client: MinerClient, job_id: str, console: Console) -> int:
    status = follow(client, job_id, console)
    if status is not wire.JobStatus.FINISHED:
        raise JobUnsuccessful(f"job {job_id} {status.value if status else 'did not end: its event stream did'}")
    print_result(client.result(job_id), console)
    return ExitCode.OK


def cmd_follow(client: MinerClient, args, console: Console) -> int:
    return _follow_to_end(client, _job_id(client, args.job), console)


def cmd_jobs(client: MinerClient, args, console: Console) -> int:
    if not 1 <= args.limit <= MAX_LISTED:
        raise UsageError(f"--limit {args.limit}: must be between 1 and {MAX_LISTED}")
    jobs = client.jobs(args.limit)
    if args.json:
        _print_json(jobs)
        return ExitCode.OK
    table = _table("jobs", "id", "status", "dataset", "pop x gens", "generation", "best fitness", "created")
    for job in jobs:
        best = f"{job.best.fitness:+.3f}" if job.best else "-"
        table.add_row(job.id, job.status.value, job.spec.dataset, f"{job.spec.population} x {job.spec.generations}",
                      f"{job.progress.generation}/{job.progress.generations}", best, _when(job.created_at))
    console.print(table)
    return ExitCode.OK


def cmd_show(client: MinerClient, args, console: Console) -> int:
    job = client.job(_job_id(client, args.job))
    if args.json:
        _print_json(job)
    else:
        lines = [f"job {job.id}: {job.status.value}  (created {_when(job.created_at)}, "
                 f"started {_when(job.started_at)}, finished {_when(job.finished_at)})",
                 f"spec: {job.spec.model_dump_json(exclude_none=True)}",
                 f"evaluator: {job.evaluator_version} (pinned at submission)",
                 f"progress: generation {job.progress.generation}/{job.progress.generations}, "
                 f"{job.progress.evaluations:,} evaluations"]
        if job.best:
            lines += [f"best so far (generation {job.best.generation + 1}): fitness {job.best.fitness:+.4f}  "
                      f"net pnl over the training folds {job.best.metrics.get('net_pnl', float('nan')):+,.2f} USD",
                      f"  {job.best.strategy}"]
        for line in lines:
            console.print(line, markup=False, highlight=False)
        if job.error:
            console.print(f"error: {job.error}", style="red", markup=False)
    if _unsuccessful(job.status):
        raise JobUnsuccessful(f"job {job.id} {job.status.value}")
    return ExitCode.OK


def cmd_result(client: MinerClient, args, console: Console) -> int:
    if args.top is not None and args.top < 1:
        raise UsageError(f"--top {args.top}: must be at least 1")
    if args.plot and not Path(args.plot).expanduser().parent.is_dir():
        raise UsageError(f"--plot {args.plot}: the folder {Path(args.plot).expanduser().parent} does not exist")
    job_id = _job_id(client, args.job)
    result = _result_of(client, job_id)
    if args.plot:
        from client.plot import plot_result

        try:
            console.print(f"equity and drawdown plotted to {plot_result(result, args.plot)}")
        except ImportError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            raise UsageError(f"--plot {args.plot}: {exc.strerror or exc}") from None
    if args.json:
        _print_json(result.model_copy(update={"hall_of_fame": result.hall_of_fame[:args.top]}) if args.top else result)
        return ExitCode.OK
    if result.cancelled:  # ended early: the best of the generations it completed
        status = client.job(job_id).status.value
        tested = "" if result.validation.verdict != "not_validated" else "; not validated"
        console.print(f"job {job_id} {status} at generation {result.generations_run}{tested}: the best of the "
                      "generations it completed", style="bold yellow", soft_wrap=True, markup=False)
    if not args.plot:
        print_result(result, console, args.top or 0)
    return ExitCode.OK


def cmd_cancel(client: MinerClient, args, console: Console) -> int:
    accepted = client.cancel(_job_id(client, args.job))
    console.print(f"job {accepted.id}: {accepted.status.value} (it stops between batches)")
    return ExitCode.OK


def cmd_cluster(client: MinerClient, args, console: Console) -> int:
    info = client.cluster()
    if args.json:
        _print_json(info)
        return ExitCode.OK
    refused = f", {info.refused_workers} refused (other engine code: see miner doctor)" if info.refused_workers else ""
    table = _table(f"cluster: {info.workers} workers ready, {info.pending_workers} starting{refused}",
                   "node", "label", "address", "CPUs", "alive", "workers", "genomes backtested")
    for node in info.nodes:
        table.add_row(node.node_id[:12], node.label or "-", node.address, f"{node.cpus:g}",
                      "yes" if node.alive else "[red]no", str(node.workers), f"{node.evaluations:,}")
    console.print(table)
    return ExitCode.OK


def cmd_doctor(client: MinerClient, args, console: Console) -> int:
    """Exit 0 when every check passes, 3 when one fails (each failure prints its fix)."""
    checks = diagnose(client.url, client.token)
    table = _table(f"miner doctor: {client.url}", "check", "", "what was found", "fix")
    for check in checks:
        table.add_row(check.name, "[green]ok" if check.ok else "[red]FAIL", check.detail, check.fix)
    console.print(table)
    return ExitCode.OK if all(check.ok for check in checks) else ExitCode.SERVICE


def _check_csv(file: str) -> None:
    """Refuse a file that cannot be a CSV before sending it: missing, unreadable, empty or not text."""
    try:
        with open(file, "rb") as csv:
            header = csv.readline()
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror}") from None
    if not header.strip():
        raise UsageError(f"{file} is empty: expected a CSV whose first line names its columns")
    try:
        header.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{file} is not a text CSV (its first line is not UTF-8)") from None


def cmd_datasets(client: MinerClient, args, console: Console) -> int:
    if args.action == "upload":
        if not args.file:
            raise UsageError("miner datasets upload FILE: FILE is missing")
        _check_csv(args.file)
        info = client.upload_dataset(args.file, name=args.name)
        console.print(f"uploaded [bold]{info.name}[/bold]: {info.candles:,} candles, fingerprint {info.fingerprint}")
        return ExitCode.OK
    if args.file or args.name:
        raise UsageError("miner datasets list takes no FILE or --name (they are for upload)")
    datasets = client.datasets()
    if args.json:
        _print_json(datasets)
        return ExitCode.OK
    table = _table("datasets", "name", "candles", "from", "to", "bar", "gaps", "source")
    for d in datasets:
        table.add_row(d.name, f"{d.candles:,}", _when(d.first_time), _when(d.last_time), f"{d.bar_seconds}s",
                      str(d.gaps), d.source)
    console.print(table)
    return ExitCode.OK


def _params(pairs: list[str]) -> dict[str, float]:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise UsageError(f"--param {pair!r}: expected NAME=NUMBER, e.g. --param drawdown_limit=0.3")
    return params


def _push_once(client: MinerClient, args, console: Console) -> None:
    try:
        source = Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}") from None
    started = time.perf_counter()
    try:
        info = client.push_evaluator(args.name or Path(args.file).stem, source, _params(args.param), args.default)
    except ValidationError as exc:  # the push itself, before sending: an empty or too large module
        raise UsageError(f"{args.file}: {exc.errors()[0]['msg']}") from None
    default = " (now the default)" if info.default else ""
    console.print(f"pushed {info.version}{default} in {time.perf_counter() - started:.2f} s")


def cmd_evaluator(client: MinerClient, args, console: Console) -> int:
    if args.action == "list":
        if args.file:
            raise UsageError("miner evaluator list takes no FILE (it is for push)")
        evaluators = client.evaluators()
        if args.json:
            _print_json(evaluators)
            return ExitCode.OK
        table = _table("evaluators", "version", "params", "builtin", "default", "added")
        for e in evaluators:
            params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in e.params.items())
            table.add_row(e.version, params, "yes" if e.builtin else "", "*" if e.default else "",
                          _when(e.created_at))
        console.print(table)
        return ExitCode.OK
    if not args.file:
        raise UsageError("miner evaluator push FILE: FILE is missing")
    if not args.watch:
        _push_once(client, args, console)
        return ExitCode.OK
    console.print(f"watching {args.file}: every save is pushed (Ctrl-C to stop)")
    seen = None
    while True:
        stamp = Path(args.file).stat().st_mtime_ns if Path(args.file).exists() else None
        if stamp is not None and stamp != seen:
            seen = stamp
            try:
                _push_once(client, args, console)
            except (ServiceError, UsageError) as exc:  # keep watching: the next save may fix it
                console.print(f"rejected: {getattr(exc, 'message', exc)}", style="red", markup=False)
        time.sleep(0.5)


# ---- export and compare ----------------------------------------------------------------------------------------

def _result_of(client: MinerClient, job_id: str) -> wire.JobResult:
    """A job's result; one the job will never have is the job's failure (exit 4), not the request's."""
    try:
        return client.result(job_id)
    except ServiceError as exc:
        if exc.status == 409 and _unsuccessful(client.job(job_id).status):
            raise JobUnsuccessful(exc.message) from None
        raise


def cmd_export(client: MinerClient, args, console: Console) -> int:
    if args.rank < 1:
        raise UsageError(f"--rank {args.rank}: must be at least 1 (1 is the best strategy)")
    out = Path(args.out).expanduser() if args.out else None
    if out and not out.parent.is_dir():
        raise UsageError(f"--out {args.out}: the folder {out.parent} does not exist")
    fmt = args.format or ("python" if out and out.suffix == ".py" else "json")
    job_id = _job_id(client, args.job)
    result = _result_of(client, job_id)
    try:
        document = export.strategy_document(client.job(job_id), result, args.rank)
    except export.RankError as exc:
        raise UsageError(f"--rank {args.rank}: {exc}") from None
    text = export.render(document, fmt)
    if out is None:
        sys.stdout.write(text)
        return ExitCode.OK
    try:
        out.write_text(text)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: {exc.strerror or exc}") from None
    run = f"; run it: python {shlex.quote(args.out)} CANDLES.csv" if fmt == "python" else ""
    console.print(f"wrote {args.out}: rank {args.rank} of job {job_id}: {document['strategy']}{run}", markup=False,
                  highlight=False, soft_wrap=True)
    return ExitCode.OK


COMPARED_METRICS = ("return_pct", "trades", "max_drawdown")  # per side, formatted as `miner result` shows them


def _comparison(result: wire.JobResult) -> dict[str, Any]:
    sides = {"train": result.train, "holdout": result.holdout}
    return {"job_id": result.job_id, "dataset": result.dataset, "fitness": result.fitness,
            "verdict": result.validation.verdict, "p_value": result.validation.p_value,
            **{side: {name: backtest.metrics.get(name) for name in COMPARED_METRICS} if backtest else None
               for side, backtest in sides.items()},
            "strategy": result.strategy}


def cmd_compare(client: MinerClient, args, console: Console) -> int:
    rows = [_comparison(_result_of(client, _job_id(client, job))) for job in args.jobs]
    if args.json:
        print(json.dumps(rows, indent=2))
        return ExitCode.OK
    table = _table("best strategies side by side", "", *(row["job_id"] for row in rows))
    table.add_row("dataset", *(row["dataset"] for row in rows))
    table.add_row("fitness", *(f"{row['fitness']:+.4f}" for row in rows))
    table.add_row("verdict", *(row["verdict"] + ("" if row["p_value"] is None else f" (p = {row['p_value']:.2f})")
                               for row in rows))
    for side in ("train", "holdout"):
        for name in COMPARED_METRICS:
            values = [(row[side] or {}).get(name) for row in rows]
            table.add_row(f"{side} {name}", *("-" if v is None else METRIC_FORMATS[name].format(v) for v in values))
    table.add_row("strategy", *(row["strategy"] for row in rows))
    console.print(table)
    return ExitCode.OK


# ---- backtest ----------------------------------------------------------------------------------------------------

BACKTEST_FIELDS = {spec_flag.loc: spec_flag for spec_flag in (
    *(SpecFlag((name,), wire.BacktestRequest.model_fields[name]) for name in ("dataset", "start", "end")),
    *(spec_flag for spec_flag in SPEC_FLAGS if spec_flag.is_cost))}  # each field of a flag, by its place
BACKTEST_FLAGS = {loc: spec_flag.flag for loc, spec_flag in BACKTEST_FIELDS.items()}
TIME_WORDS = "not a date or time: give an ISO-8601 date or time (2025-10-01, 2025-10-01T12:00Z) or epoch seconds"


def _strategy_file(file: str) -> dict[str, Any]:
    """The JSON object a strategy file holds (a strategy document or a genome); the service checks the rest."""
    try:
        text = Path(file).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        strategy = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{file} is not JSON ({exc}): expected a strategy document (miner export JOB --out "
                         "strategy.json) or a genome") from None
    if not isinstance(strategy, dict):
        raise UsageError(f"{file} holds a JSON {type(strategy).__name__}, not an object: expected a strategy document "
                         "(miner export JOB --out strategy.json) or a genome")
    return strategy


def _strategy_of(client: MinerClient, args) -> dict[str, Any]:
    """STRATEGY: a file (a strategy document or a genome), or with --rank, or when no such file exists, a job whose
    K-th best strategy it takes (as `miner export` would write it)."""
    if not args.strategy:
        raise UsageError("STRATEGY is empty: give a strategy file (miner export JOB --out strategy.json) or a JOB")
    if args.rank is not None and args.rank < 1:
        raise UsageError(f"--rank {args.rank}: must be at least 1 (1 is the best strategy)")
    looks_like_file = Path(args.strategy).expanduser().exists() or any(c in args.strategy for c in "./\\")
    if looks_like_file and args.rank is None:
        return _strategy_file(args.strategy)
    if looks_like_file and Path(args.strategy).expanduser().is_file():
        raise UsageError(f"--rank {args.rank}: picks from a job's best strategies; {args.strategy} is a file, which "
                         "holds one (give a JOB instead)")
    try:
        job_id = _job_id(client, args.strategy)
    except UsageError as exc:
        raise UsageError(f"{exc}; nor is {args.strategy!r} a strategy file") from None
    try:
        return export.strategy_document(client.job(job_id), _result_of(client, job_id), args.rank or 1)
    except export.RankError as exc:
        raise UsageError(f"--rank {args.rank}: {exc}") from None


def _backtest_request(args, strategy: dict[str, Any]) -> wire.BacktestRequest:
    """The request of the flags given (costs not given are left to the service), refused in the flags' words."""
    given = {loc: getattr(args, loc[-1]) for loc in BACKTEST_FLAGS if getattr(args, loc[-1]) is not None}
    fields = {"strategy": strategy, **_nested(given)}
    try:
        return wire.BacktestRequest(**fields)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            flag, words = BACKTEST_FLAGS.get(loc), error["msg"].removeprefix("Value error, ")
            if loc in (("start",), ("end",)) and error["type"].startswith(("datetime", "date")):
                words = TIME_WORDS
            elif loc == ("end",) and error["type"] == "value_error":  # not after start
                words = f"must be after --start {shlex.quote(str(given[('start',)]))}"
            elif loc in BACKTEST_FIELDS and error["type"] != "value_error":
                words = BACKTEST_FIELDS[loc].rule() or words
            problems.append(f"{flag} {shlex.quote(str(given[loc]))}: {words}" if flag else words)
        raise UsageError("; ".join(problems)) from None


def _refused_in_our_words(exc: ServiceError, args) -> UsageError | ServiceError:
    """A 422 whose details name fields, told as the flag (or the strategy file) at fault."""
    if exc.status != 422 or not exc.details:
        return exc
    flags = {".".join(loc): (flag, getattr(args, loc[-1])) for loc, flag in BACKTEST_FLAGS.items()}
    problems = []
    for detail in exc.details:
        field, message = str(detail.get("field", "")), detail.get("message", "")
        if field in flags:
            flag, value = flags[field]
            problems.append(f"{flag}{'' if value is None else ' ' + shlex.quote(str(value))}: {message}")
        elif field == "strategy" or field.startswith("strategy."):
            problems.append(f"{args.strategy}: {field.removeprefix('strategy').removeprefix('.') or 'strategy'}: "
                            f"{message}")
        else:
            problems.append(f"{field}: {message}" if field else message)
    return UsageError("; ".join(problems))


def cmd_backtest(client: MinerClient, args, console: Console) -> int:
    flags = _backtest_request(args, {})  # the flags first: a bad one is refused before any file or job is read
    request = flags.model_copy(update={"strategy": _strategy_of(client, args)})
    try:
        tested = client.backtest(request)
    except ServiceError as exc:
        raise _refused_in_our_words(exc, args) from None
    if args.json:
        _print_json(tested)
        return ExitCode.OK
    costs = tested.costs
    console.print(f"strategy: {tested.strategy}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"{tested.dataset} ({tested.data_fingerprint}): {tested.bars:,} bars from {_when(tested.first_time)} "
                  f"to {_when(tested.last_time)} UTC; fee {costs.fee_bps:g} bps, slippage {costs.slippage_bps:g} bps, "
                  f"cash {costs.initial_cash:,.2f}", markup=False, highlight=False, soft_wrap=True)
    console.print(backtest_table(tested))
    console.print(f"{len(tested.trades):,} trades (--json lists them, with the equity curve)", highlight=False)
    return ExitCode.OK


# ---- parser and entry point ------------------------------------------------------------------------------

class MinerParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (UsageError) instead of usage text and an exit."""

    def error(self, message: str):
        raise UsageError(message.removeprefix("argument "))


def _connection_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """--url, --token, --admin-token: before the command (default None) or after it (SUPPRESS: not set unless
    given, so a value given before the command is kept)."""
    parser.add_argument("--url", default=default, help="service URL (default: $MINER_URL, ~/.miner/config.toml, "
                                                       "http://127.0.0.1:8000)")
    parser.add_argument("--token", default=default,
                        help="API token (default: $MINER_TOKEN, ~/.miner/config.toml, ~/.miner/token)")
    parser.add_argument("--admin-token", default=default,
                        help="token for pushing evaluators (default: $MINER_ADMIN_TOKEN, config.toml's admin_token, "
                             "~/.miner/admin_token)")


SECRET_FLAGS = ("--token", "--admin-token")


def glue_secrets(argv: list[str]) -> list[str]:
    """``--token VALUE`` as ``--token=VALUE``: a token may start with "-" (the urlsafe ones of earlier heads, one in
    64), which argparse would take for a flag of its own. Nothing after ``--`` is a flag, so nothing there is glued."""
    glued, rest = [], iter(argv)
    for arg in rest:
        if arg == "--":
            return [*glued, arg, *rest]
        value = next(rest, None) if arg in SECRET_FLAGS else None
        glued.append(arg if value is None else f"{arg}={value}")
    return glued


def build_parser() -> argparse.ArgumentParser:
    parser = MinerParser(prog="miner", description=__doc__, allow_abbrev=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection_flags(parser, None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable, help_: str, *, json_output: bool = False) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_, allow_abbrev=False)
        sub.set_defaults(handler=handler)
        _connection_flags(sub, argparse.SUPPRESS)
        if json_output:
            sub.add_argument("--json", action="store_true", help="print it as JSON")
        return sub

    submit = add("submit", cmd_submit, "queue a mining job (only the flags given are sent; the service fills in "
                                       "the rest with the defaults shown)")
    for spec_flag in SPEC_FLAGS:
        _add_spec_flag(submit, spec_flag)
    submit.add_argument("--follow", action="store_true", help="show live progress, then the result")
    add("follow", cmd_follow, "show a job's live progress, then its result").add_argument("job")
    jobs = add("jobs", cmd_jobs, "list recent jobs", json_output=True)
    jobs.add_argument("--limit", type=_whole_number, default=20, help="how many (default: 20)")
    add("show", cmd_show, "one job's status, progress and best strategy so far", json_output=True).add_argument("job")
    result = add("result", cmd_result, "the best strategy of a job that finished, or was cancelled or failed after "
                                       "completing a generation", json_output=True)
    result.add_argument("job")
    result.add_argument("--top", type=_whole_number, metavar="N",
                        help="also list the job's N best distinct strategies (with --json: keep N of them)")
    result.add_argument("--plot", metavar="PNG", help="plot equity and drawdown to this file (needs the plot extra)")
    add("cancel", cmd_cancel, "stop a job between batches").add_argument("job")
    add("cluster", cmd_cluster, "nodes, CPUs, workers and genomes backtested per node", json_output=True)
    add("doctor", cmd_doctor, "check the address, token, clock and versions of this laptop and every node")
    evaluator = add("evaluator", cmd_evaluator, "list evaluators (the default), or push a new version: "
                                                "miner evaluator push FILE [--default] [--watch]", json_output=True)
    evaluator.add_argument("action", nargs="?", choices=["list", "push"], default="list")
    evaluator.add_argument("file", nargs="?", help="evaluator module (.py) defining score(m, **params)")
    evaluator.add_argument("--name", help="evaluator name (default: the file name)")
    evaluator.add_argument("--param", action="append", metavar="NAME=NUMBER", help="override a PARAMS value")
    evaluator.add_argument("--default", action="store_true", help="make it the default for new jobs")
    evaluator.add_argument("--watch", action="store_true", help="push again every time the file is saved")
    datasets = add("datasets", cmd_datasets, "list datasets (the default), or upload a CSV: "
                                             "miner datasets upload FILE", json_output=True)
    datasets.add_argument("action", nargs="?", choices=["list", "upload"], default="list")
    datasets.add_argument("file", nargs="?")
    datasets.add_argument("--name", help="name for the upload (default: the file name)")
    exporting = add("export", cmd_export, "write a job's best strategy as JSON (the strategy document of "
                                          "docs/strategy.md) or as a Python file that backtests it with numpy alone")
    exporting.add_argument("job")
    exporting.add_argument("--rank", type=_whole_number, default=1, metavar="K",
                           help="the K-th of the job's best distinct strategies (default: 1, the best)")
    exporting.add_argument("--format", choices=export.FORMATS,
                           help="json or python (run it: python FILE candles.csv); default: python for an --out "
                                "ending in .py, else json")
    exporting.add_argument("--out", metavar="FILE", help="write it to FILE (default: standard output)")
    compare = add("compare", cmd_compare, "the best strategies of several jobs side by side", json_output=True)
    compare.add_argument("jobs", nargs="+", metavar="JOB")
    backtest = add("backtest", cmd_backtest, "backtest a strategy on any dataset, period and costs: a strategy file "
                                             "(miner export JOB --out strategy.json, or a genome), or JOB [--rank K]",
                   json_output=True)
    backtest.add_argument("strategy", metavar="STRATEGY",
                          help="a strategy document or genome JSON file; or a job id (or its start): its best "
                               "strategy, or with --rank the K-th")
    backtest.add_argument("--dataset", required=True, help="dataset to test on (miner datasets lists them)")
    backtest.add_argument("--start", metavar="TIME",
                          help="trade from the first bar at or after TIME: an ISO-8601 date or time (UTC unless it "
                               "says otherwise) or epoch seconds (default: the dataset's first bar)")
    backtest.add_argument("--end", metavar="TIME", help="trade up to the last bar before TIME (default: the dataset's "
                                                        "last bar)")
    for spec_flag in SPEC_FLAGS:
        if spec_flag.is_cost:
            _add_spec_flag(backtest, spec_flag)
    backtest.add_argument("--rank", type=_whole_number, metavar="K",
                          help="with a JOB: the K-th of its best distinct strategies (default: 1, the best)")
    return parser


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """A reader that left (``| head``) is no error: the same exit as print's broken pipe below, not rich's
        ``SystemExit(1)``."""
        self.quiet = True
        raise BrokenPipeError


def output_console() -> Console:
    """stdout for people and scripts alike: lines are never wrapped by rich (a long line is the terminal's to
    wrap), and piped output is as wide as it needs to be, so no table is cut."""
    console = _Console(soft_wrap=True)
    return console if console.is_terminal else _Console(soft_wrap=True, width=PIPED_WIDTH)


def _fail(code: ExitCode, message: str) -> int:
    """An error: one line on stderr."""
    print(" ".join(message.split()), file=sys.stderr)
    return code


def _drop_stdout() -> None:
    """The reader of stdout left (`miner result --json | head`): what is still buffered goes nowhere, quietly."""
    with contextlib.suppress(OSError, ValueError):  # not a real file (a test's capture): nothing to drop
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None,
         open_stream: StreamOpener = websocket_stream) -> int:
    """Run one command; ``transport`` and ``open_stream`` replace the ways to the service (``MinerClient``'s)."""
    try:
        args = build_parser().parse_args(glue_secrets(sys.argv[1:] if argv is None else argv))
        settings = resolve(args.url, args.token, args.admin_token)
        with MinerClient(settings.url, settings.token, admin_token=settings.admin_token, transport=transport,
                         open_stream=open_stream) as client:
            code = args.handler(client, args, output_console())
        sys.stdout.flush()  # here, so that a reader who left is noticed here
        return code
    except SystemExit as exc:  # --help printed
        return int(exc.code or 0)
    except BrokenPipeError:
        _drop_stdout()
        return ExitCode.OK
    except (UsageError, ConfigError) as exc:
        return _fail(ExitCode.USAGE, f"error: {exc}")
    except JobUnsuccessful as exc:
        return _fail(ExitCode.JOB_FAILED, f"error: {exc}")
    except ServiceError as exc:
        return _fail(exit_code_for(exc.status), f"error: {exc.message}")
    except MinerClientError as exc:
        return _fail(ExitCode.SERVICE, f"error: {exc}")
    except KeyboardInterrupt:
        return _fail(ExitCode.INTERRUPTED, "interrupted; the job keeps running on the service "
                                           "(miner follow JOB to watch again)")


if __name__ == "__main__":
    sys.exit(main())
