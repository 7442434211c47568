"""`miner`: drive a miner service from any laptop. HTTP and WebSocket only; no Ray needed.

Exit codes: 0 ok; 2 the request is wrong (a bad flag or value, a wrong token, an unknown job or dataset, a
conflict); 3 the service could not serve it (unreachable, timed out, too busy, failed); 4 the job failed or was
cancelled where a finished job was needed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from client import models as wire
from client.api import MinerClient, StreamOpener, websocket_stream
from client.display import follow, print_result
from client.doctor import diagnose
from client.errors import MinerClientError, ServiceError
from client.settings import ConfigError, resolve
from schema.errors import ExitCode, exit_code_for
from schema.research import ValidationSettings
from schema.search import SearchSettings


class UsageError(Exception):
    """Bad input caught before talking to the service."""


class JobUnsuccessful(Exception):
    """The job failed or was cancelled where a finished job was needed."""


def _unsuccessful(status: wire.JobStatus) -> bool:
    return status.terminal and status is not wire.JobStatus.FINISHED


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


# ---- commands ---------------------------------------------------------------------------------------------

def cmd_submit(client: MinerClient, args, console: Console) -> int:
    given = {name: value for name, value in (("fee_bps", args.fee_bps), ("slippage_bps", args.slippage_bps))
             if value is not None}
    try:
        costs = wire.Costs(**given) if given else None  # a cost not given is the service's default, not the wire's
        spec = wire.JobSpec(dataset=args.dataset, population=args.population, generations=args.generations,
                            risk=args.risk, seed=args.seed, holdout_fraction=args.holdout, costs=costs,
                            evaluator=args.evaluator, folds=args.folds, min_trades=args.min_trades,
                            permutations=args.permutations, islands=args.islands)
    except ValidationError as exc:
        raise UsageError("; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}"
                                   for e in exc.errors())) from None
    job = client.submit(spec)
    console.print(f"submitted job [bold]{job.id}[/bold] ({spec.population} x {spec.generations} on {spec.dataset})")
    return _follow_to_end(client, job.id, console) if args.follow else ExitCode.OK


def _follow_to_end(client: MinerClient, job_id: str, console: Console) -> int:
    if follow(client, job_id, console) is not wire.JobStatus.FINISHED:
        return ExitCode.JOB_FAILED
    print_result(client.result(job_id), console)
    return ExitCode.OK


def cmd_follow(client: MinerClient, args, console: Console) -> int:
    return _follow_to_end(client, args.job, console)


def cmd_jobs(client: MinerClient, args, console: Console) -> int:
    table = Table(title="jobs")
    for column in ("id", "status", "dataset", "pop x gens", "generation", "best fitness", "created"):
        table.add_column(column, no_wrap=column in ("id", "status"))
    for job in client.jobs(args.limit):
        best = f"{job.best.fitness:+.3f}" if job.best else "-"
        table.add_row(job.id, job.status.value, job.spec.dataset, f"{job.spec.population} x {job.spec.generations}",
                      f"{job.progress.generation}/{job.progress.generations}", best, _when(job.created_at))
    console.print(table)
    return ExitCode.OK


def cmd_show(client: MinerClient, args, console: Console) -> int:
    job = client.job(args.job)
    console.print(f"job [bold]{job.id}[/bold]: {job.status.value}  "
                  f"(created {_when(job.created_at)}, started {_when(job.started_at)}, "
                  f"finished {_when(job.finished_at)})")
    console.print(f"spec: {job.spec.model_dump_json(exclude_none=True)}")
    p = job.progress
    console.print(f"progress: generation {p.generation}/{p.generations}, {p.evaluations:,} evaluations")
    if job.best:
        console.print(f"best so far (generation {job.best.generation}): fitness {job.best.fitness:+.4f}  "
                      f"pnl {job.best.metrics['net_pnl']:+,.2f}\n  {job.best.strategy}")
    if job.error:
        console.print(f"[red]error: {job.error}")
    return ExitCode.JOB_FAILED if _unsuccessful(job.status) else ExitCode.OK


def cmd_result(client: MinerClient, args, console: Console) -> int:
    try:
        result = client.result(args.job)
    except ServiceError as exc:  # 409: not finished; one that never will is the job's failure, not the request's
        if exc.status == 409 and _unsuccessful(client.job(args.job).status):
            raise JobUnsuccessful(exc.message) from None
        raise
    if args.plot:
        from client.plot import plot_result

        try:
            console.print(f"equity and drawdown plotted to {plot_result(result, args.plot)}")
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        print(result.model_dump_json(indent=2))
    elif not args.plot:
        print_result(result, console)
    return ExitCode.OK


def cmd_cancel(client: MinerClient, args, console: Console) -> int:
    accepted = client.cancel(args.job)
    console.print(f"job {accepted.id}: {accepted.status.value} (it stops between batches)")
    return ExitCode.OK


def cmd_cluster(client: MinerClient, args, console: Console) -> int:
    info = client.cluster()
    table = Table(title=f"cluster: {info.workers} workers ready, {info.pending_workers} starting")
    for column in ("node", "label", "address", "CPUs", "alive", "workers", "genomes backtested"):
        table.add_column(column)
    for node in info.nodes:
        table.add_row(node.node_id[:12], node.label or "-", node.address, f"{node.cpus:g}",
                      "yes" if node.alive else "[red]no", str(node.workers), f"{node.evaluations:,}")
    console.print(table)
    return ExitCode.OK


def cmd_doctor(client: MinerClient, args, console: Console) -> int:
    """Exit 0 when every check passes, 3 when one fails (each failure prints its fix)."""
    checks = diagnose(client.url, client.token)
    table = Table(title=f"miner doctor: {client.url}")
    for column in ("check", "", "what was found", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        table.add_row(check.name, "[green]ok" if check.ok else "[red]FAIL", check.detail, check.fix)
    console.print(table)
    return ExitCode.OK if all(check.ok for check in checks) else ExitCode.SERVICE


def cmd_datasets(client: MinerClient, args, console: Console) -> int:
    if args.action == "upload":
        if not args.file:
            raise UsageError("miner datasets upload FILE: FILE is missing")
        try:
            info = client.upload_dataset(args.file, name=args.name)
        except FileNotFoundError:
            raise UsageError(f"no such file: {args.file}") from None
        console.print(f"uploaded [bold]{info.name}[/bold]: {info.candles:,} candles, fingerprint {info.fingerprint}")
        return ExitCode.OK
    table = Table(title="datasets")
    for column in ("name", "candles", "from", "to", "bar", "gaps", "source"):
        table.add_column(column, no_wrap=column == "name")
    for d in client.datasets():
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
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    started = time.perf_counter()
    info = client.push_evaluator(args.name or Path(args.file).stem, source, _params(args.param), args.default)
    default = " (now the default)" if info.default else ""
    console.print(f"pushed {info.version}{default} in {time.perf_counter() - started:.2f} s")


def cmd_evaluator(client: MinerClient, args, console: Console) -> int:
    if args.action == "list":
        table = Table(title="evaluators")
        for column in ("version", "params", "builtin", "default", "added"):
            table.add_column(column, no_wrap=column in ("version", "added"))
        for e in client.evaluators():
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
            except ServiceError as exc:  # keep watching: the next save may fix it
                console.print(f"[red]rejected: {exc.message}", markup=True)
        time.sleep(0.5)


# ---- parser and entry point ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="miner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="service URL (default: $MINER_URL, ~/.miner/config.toml, "
                                      "http://127.0.0.1:8000)")
    parser.add_argument("--token", help="API token (default: $MINER_TOKEN, ~/.miner/config.toml, ~/.miner/token)")
    parser.add_argument("--admin-token", help="token for pushing evaluators (default: $MINER_ADMIN_TOKEN, "
                                              "config.toml's admin_token, ~/.miner/admin_token)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.set_defaults(handler=handler)
        return sub

    submit = add("submit", cmd_submit, "queue a mining job")
    submit.add_argument("--dataset", required=True)
    fields = wire.JobSpec.model_fields
    submit.add_argument("--population", type=int, default=fields["population"].default)
    submit.add_argument("--generations", type=int, default=fields["generations"].default)
    submit.add_argument("--risk", default="MEDIUM", help="LOW, MEDIUM or HIGH")
    submit.add_argument("--seed", type=int, default=0)
    submit.add_argument("--holdout", type=float, default=0.2, help="share of the latest bars held out")
    submit.add_argument("--fee-bps", type=float, help="fee per side in basis points (default: the service's)")
    submit.add_argument("--slippage-bps", type=float, help="slippage per fill in basis points")
    submit.add_argument("--evaluator", help="fitness function (default: the service's)")
    validation = ValidationSettings()
    submit.add_argument("--folds", type=int, default=validation.folds,
                        help=f"training slices a strategy must work on (default {validation.folds})")
    submit.add_argument("--min-trades", type=int, default=validation.min_trades,
                        help=f"training trades below which a strategy ranks last (default {validation.min_trades})")
    submit.add_argument("--permutations", type=int, default=validation.permutations,
                        help="shuffled copies the search is repeated on for the verdict; 0 = no verdict "
                             f"(default {validation.permutations})")
    islands = SearchSettings.model_fields["islands"].default
    submit.add_argument("--islands", type=int, default=islands,
                        help=f"sub-populations of the search, each at least 8 genomes (default {islands})")
    submit.add_argument("--follow", action="store_true", help="show live progress, then the result")
    add("follow", cmd_follow, "show a job's live progress, then its result").add_argument("job")
    add("jobs", cmd_jobs, "list recent jobs").add_argument("--limit", type=int, default=20)
    add("show", cmd_show, "one job's status, progress and best strategy so far").add_argument("job")
    result = add("result", cmd_result, "the best strategy of a finished job")
    result.add_argument("job")
    result.add_argument("--json", action="store_true", help="print the full result as JSON")
    result.add_argument("--plot", metavar="PNG", help="plot equity and drawdown to this file (needs [plot])")
    add("cancel", cmd_cancel, "stop a job between batches").add_argument("job")
    add("cluster", cmd_cluster, "nodes, CPUs, workers and genomes backtested per node")
    add("doctor", cmd_doctor, "check the address, token, clock and versions of this laptop and every node")
    evaluator = add("evaluator", cmd_evaluator, "list evaluators, or push a new version: "
                                                "miner evaluator push FILE [--default] [--watch]")
    evaluator.add_argument("action", choices=["list", "push"])
    evaluator.add_argument("file", nargs="?", help="evaluator module (.py) defining score(m, **params)")
    evaluator.add_argument("--name", help="evaluator name (default: the file name)")
    evaluator.add_argument("--param", action="append", metavar="NAME=NUMBER", help="override a PARAMS value")
    evaluator.add_argument("--default", action="store_true", help="make it the default for new jobs")
    evaluator.add_argument("--watch", action="store_true", help="push again every time the file is saved")
    datasets = add("datasets", cmd_datasets, "list datasets, or upload a CSV: miner datasets upload FILE")
    datasets.add_argument("action", nargs="?", choices=["list", "upload"], default="list")
    datasets.add_argument("file", nargs="?")
    datasets.add_argument("--name", help="name for the upload (default: the file name)")
    return parser


def main(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None,
         open_stream: StreamOpener = websocket_stream) -> int:
    """Run one command; ``transport`` and ``open_stream`` replace the ways to the service (``MinerClient``'s)."""
    args = build_parser().parse_args(argv)
    console = Console()
    errors = Console(stderr=True, soft_wrap=True)
    try:
        settings = resolve(args.url, args.token, args.admin_token)
        with MinerClient(settings.url, settings.token, admin_token=settings.admin_token, transport=transport,
                         open_stream=open_stream) as client:
            return args.handler(client, args, console)
    except (UsageError, ConfigError) as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        return ExitCode.USAGE
    except JobUnsuccessful as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        return ExitCode.JOB_FAILED
    except ServiceError as exc:
        errors.print(f"error: {exc.message}", markup=False, highlight=False)
        return exit_code_for(exc.status)
    except MinerClientError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        return ExitCode.SERVICE
    except KeyboardInterrupt:
        errors.print("interrupted; the job keeps running on the service (miner follow JOB to watch again)")
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
