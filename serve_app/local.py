"""One command, one machine: start a local Ray head and the miner service, mine one job at the defaults, show it.

    python -m serve_app.local --data-dir data --dataset BTC-USD_FIVE_MINUTE

This is the embedded default: the same app `serve deploy deploy/config.yaml` runs on a cluster, with
workers for every CPU here. The API token is written to ~/.miner/token (printed below); with
``--keep-running`` the service stays up for other terminals (`miner` CLI, MinerClient) until Ctrl-C or
SIGTERM; either stops it cleanly (exit 0): unfinished jobs resume on the next start with the same --state-dir.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from client import MinerClient, MinerClientError
from client.display import follow, print_result
from client.models import JobSpec
from schema.errors import ExitCode
from serve_app.head_setup import ensure_token
from serve_app.loopback import keep_ray_on_loopback
from serve_app.stop import stop_on_signals, stop_service


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serve_app.local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder of .csv, .csv.gz or .parquet candle files (default: synthetic only)")
    parser.add_argument("--dataset", default=None, help="dataset to mine (default: first file, else synthetic)")
    for name in ("population", "generations"):  # the job's defaults: the demo is the job a trader would run
        field = JobSpec.model_fields[name]
        parser.add_argument(f"--{name}", type=int, default=field.default, help=f"{field.description} (default: "
                            f"{field.default}, as for any job)")
    parser.add_argument("--risk", default="MEDIUM")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--state-dir", default="~/.miner", help="job store, uploads and the API token")
    parser.add_argument("--keep-running", action="store_true", help="serve until Ctrl-C after the first job")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_ray_on_loopback(args.host)  # before Ray is imported: a service on loopback opens no port to the network
    console = Console()
    state = Path(args.state_dir).expanduser()
    token = ensure_token(state / "token")
    admin_token = ensure_token(state / "admin_token")
    data_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        console.print(f"[red]error: --data-dir {data_dir} is not a folder")
        return 2

    import ray  # the server side only: the client above needs none of this
    from ray import serve

    from serve_app.app import build_app_with
    from serve_app.config import NAMESPACE, RAY_SYSTEM_CONFIG, RuntimeConfig, ServiceSettings

    console.print(f"starting a local Ray head with {os.cpu_count()} CPUs ...")
    stop_on_signals()  # from here on SIGTERM (a service manager's stop) unwinds like Ctrl-C, through `finally`
    url = f"http://{args.host}:{args.port}"
    try:
        # address="local": always a new single-node cluster, never an existing one found on this machine
        ray.init(address="local", namespace=NAMESPACE, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False, _system_config=RAY_SYSTEM_CONFIG)
        stop_on_signals()  # again: ray.init replaced the SIGTERM handler with one that aborts
        serve.start(http_options={"host": args.host, "port": args.port}, logging_config={"log_level": "WARNING"})
        settings = ServiceSettings(store_path=str(state / "miner.db"),
                                   data_dir=str(data_dir) if data_dir else None, upload_dir=str(state / "uploads"),
                                   token=token, admin_token=admin_token, host=args.host, port=args.port)
        serve.run(build_app_with(settings, RuntimeConfig()), name="miner", route_prefix="/")
        console.print(f"miner service up at {url} (docs: {url}/docs); API token in {state / 'token'}, "
                      f"admin token (pushing evaluators) in {state / 'admin_token'}")
        if state != Path("~/.miner").expanduser():
            console.print(f"for the miner command in other terminals: export MINER_HOME={state.resolve()}")
        with MinerClient(url, token) as client:
            # the first file of --data-dir: never an upload of an earlier session, which may be too short to mine
            in_data_dir = [d.name for d in client.datasets() if d.source == "data_dir"]
            dataset = args.dataset or next(iter(in_data_dir), "synthetic")
            if dataset == "synthetic":
                console.print("[yellow]mining on SYNTHETIC candles (no --data-dir file given)")
            job = client.submit(JobSpec(dataset=dataset, population=args.population, generations=args.generations,
                                        risk=args.risk, seed=args.seed))
            outcome = follow(client, job.id, console)
            if outcome == "finished":
                print_result(client.result(job.id), console)
            if args.keep_running:
                console.print(f"service running at {url}; Ctrl-C to stop")
                while True:
                    time.sleep(3600)
            return ExitCode.OK if outcome == "finished" else ExitCode.JOB_FAILED
    except MinerClientError as exc:
        console.print(f"[red]error: {exc}")
        return ExitCode.SERVICE
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP (serve_app.stop.Stop)
        return 0
    finally:
        try:
            if ray.is_initialized():
                stop_service()
        finally:
            ray.shutdown()
        console.print("service stopped")


if __name__ == "__main__":
    sys.exit(main())
