"""Throughput, latency, memory and one large job through the full service; prints a table.

    .venv/bin/python bench/service.py [--data PATH] [--quick] [--rounds 3]
    .venv/bin/python bench/service.py --before COMMIT [--data PATH]

Starts a local single-node Ray cluster with the Serve app (as `python -m serve_app.local` does) on
this machine's cores, and compares it with the in-process engine on the same cores (threads). Every job runs the
search alone (``permutations`` 0): its validation would multiply the time by 21 and measure the same loop again.

``--before COMMIT`` prints the end-to-end table instead: a 1000 x 200 job (``permutations`` 0) in-process and
through the service, and one job of today's default size (1000 x 30) with its verdict through the service, for the
code at COMMIT (checked out with ``git worktree`` and run in a child process) and for this tree, one after the other
on the same machine. The job's size is written out, so an earlier commit with other defaults runs the same job.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
REPO = Path(os.environ.get("BENCH_ENGINE_ROOT") or HERE)  # the code measured: this tree, or an earlier checkout
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import ray  # noqa: E402
from ray import serve  # noqa: E402

from bench.table import print_table  # noqa: E402
from client import MinerClient  # noqa: E402
from engine.backtester import ThreadedBacktester  # noqa: E402
from engine.candles import load_candles  # noqa: E402
from engine.miner import MiningSession, evaluate_folds, mine  # noqa: E402
from engine.settings import DEFAULT_PERIOD_MENU, MinerSettings  # noqa: E402
from serve_app.app import build_app_with  # noqa: E402
from serve_app.config import COORDINATOR_NAME, NAMESPACE, RuntimeConfig, ServiceSettings  # noqa: E402

DEFAULT_DATA = HERE / "data" / "BTC-USD_FIVE_MINUTE.csv.gz"
PORT = 8765
VERDICT_JOB = {"population": 1000, "generations": 30}  # the default job since 2026-12-02 (schema/job.py)


def generation_span(times: list[tuple[str, float]]) -> float:
    """Seconds from the first generation_started to the last generation_best."""
    first = next(t for kind, t in times if kind == "generation_started")
    last = [t for kind, t in times if kind == "generation_best"][-1]
    return last - first


def service_run(client: MinerClient, dataset: str, population: int, generations: int) -> tuple[float, float]:
    """(seconds spent mining generations, seconds from submit to finished) for one job."""
    submitted = time.time()
    job = client.submit(dataset=dataset, population=population, generations=generations, seed=11, permutations=0)
    times = [(e.type, e.time) for e in client.events(job.id)]
    return generation_span(times), times[-1][1] - submitted


def local_run(tester: ThreadedBacktester, population: int, generations: int) -> float:
    """Seconds spent mining generations in-process, as ``engine.miner.mine`` does (the same session, folds and
    batches), with ``tester`` warm (indicators precomputed, as the service's are): both sides measure backtests
    and the GA, not indicator set-up."""
    settings = MinerSettings(population=population, generations=generations, seed=11, permutations=0)
    session = MiningSession(len(tester.local.candles), tester.local.candles.fingerprint, settings)
    started = time.perf_counter()
    while not session.done:
        population_rows = session.population()
        metrics = evaluate_folds(tester, population_rows, session.folds, settings.batch_size, lambda: False,
                                 lambda done, total: None)
        session.tell_generation(metrics)
    return time.perf_counter() - started


def cut_dataset(source: Path, target: Path, fraction: float) -> int:
    """The first ``fraction`` of a candle file's bars as a CSV beside the others; returns the bars written."""
    with gzip.open(source, "rt") if source.suffix == ".gz" else open(source) as f:
        lines = f.readlines()
    bars = int((len(lines) - 1) * fraction)
    target.write_text("".join(lines[:bars + 1]))
    return bars


def cluster_busy(client: MinerClient) -> tuple[float, int]:
    """(kernel seconds the workers have spent on batches since the service started, ready workers)."""
    cluster = client.cluster()
    return sum(node.busy_seconds for node in cluster.nodes), cluster.workers


# the service's processes on this machine by what they do: Ray titles an actor's process ray::<class>
ROLES = {"workers": ("BacktestWorker",), "coordinator": ("MinerCoordinator",),
         "ingress and proxy": ("MinerAPI", "ProxyActor")}
DAEMONS = {"raylet": "Ray's daemons", "gcs_server": "Ray's daemons"}


def service_processes() -> list[tuple[str, psutil.Process]]:
    """(role, process) for each process of the local service whose CPU time ``busy_run`` reports."""
    found = []
    for process in psutil.process_iter(["cmdline", "name"]):
        line = " ".join(process.info["cmdline"] or [])
        role = next((r for r, names in ROLES.items() if line.startswith("ray::") and any(n in line for n in names)),
                    DAEMONS.get(process.info["name"]))
        if role is not None:
            found.append((role, process))
    return found


def cpu_seconds(processes: list[tuple[str, psutil.Process]]) -> dict[str, float]:
    """CPU seconds (user + system) each role has used so far."""
    used = dict.fromkeys([*ROLES, *DAEMONS.values()], 0.0)
    for role, process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            used[role] += times.user + times.system
    return used


def busy_run(client: MinerClient, dataset: str, population: int, generations: int,
             permutations: int = 0) -> dict[str, float]:
    """While a job mines its generations (from the first generation's start to the last one's best, so not its random
    baseline after them) or, with ``permutations``, while it runs its validation searches (from ``validation_started``
    to the last one's end): worker busy time / (wall time x workers) and idle seconds per generation and worker (how
    much of the pool the coordinator keeps fed), and the CPU seconds per generation (of all the phase's searches) of
    each of the service's roles (``ROLES``, Ray's daemons), of the coordinator also as a share of the machine's cores:
    the serial work, which here takes the workers' cores."""
    processes = service_processes()
    job = client.submit(dataset=dataset, population=population, generations=generations, seed=11,
                        permutations=permutations)
    marks = []  # (wall, worker busy seconds, CPU seconds by role) at the phase's start and end
    for event in client.events(job.id):
        if permutations:
            edge = event.type == "validation_started" or (event.type == "validation_search_finished"
                                                          and event.data.done == event.data.total)
        else:
            edge = (event.type == "generation_started" and not marks) or (
                event.type == "generation_best" and event.data.generation == generations - 1)
        if edge:
            marks.append((time.perf_counter(), cluster_busy(client)[0], cpu_seconds(processes)))
    (t0, busy0, cpu0), (t1, busy1, cpu1) = marks
    wall, busy, workers = t1 - t0, busy1 - busy0, client.cluster().workers
    used = {role: cpu1[role] - cpu0[role] for role in cpu0}
    generations *= permutations + 1  # validating: the random baseline's search and each shuffled copy's
    return {"busy": busy / (wall * workers), "idle_s": (wall - busy / workers) / generations, "wall_s": wall,
            "coordinator_share": used["coordinator"] / (wall * (os.cpu_count() or 1)),
            **{f"cpu {role}": seconds / generations for role, seconds in used.items()}}


def efficiency_cells(run: dict[str, float]) -> str:
    """A ``busy_run``'s wall time, busy share and coordinator CPU per generation, as one table cell."""
    return f"{run['wall_s']:.2f} s / {run['busy']:.0%} / {run['cpu coordinator'] * 1000:.1f} ms"


def cpu_cells(run: dict[str, float], generations: int) -> str:
    """A ``busy_run``'s CPU milliseconds per generation by role, and what the machine's cores had left."""
    used = {key.removeprefix("cpu "): value for key, value in run.items() if key.startswith("cpu ")}
    left = run["wall_s"] / generations * (os.cpu_count() or 1) - sum(used.values())
    cells = {**used, "idle or other": left}
    return " / ".join(f"{role} {seconds * 1000:.1f}" for role, seconds in cells.items()) + " ms"


def first_event_latency(client: MinerClient, dataset: str, repeats: int) -> tuple[float, float]:
    """Median seconds from submit to the job_started event, and to the first batch result, on a warm service."""
    to_start, to_batch = [], []
    for seed in range(repeats):
        t0 = time.perf_counter()
        job = client.submit(dataset=dataset, population=20, generations=1, seed=seed, permutations=0)
        for event in client.events(job.id):
            if event.type == "job_started":
                to_start.append(time.perf_counter() - t0)
            if event.type == "batch_evaluated":
                to_batch.append(time.perf_counter() - t0)
                break
        client.wait(job.id)
    return statistics.median(to_start), statistics.median(to_batch)


def status_latency_while_breeding(client: MinerClient, dataset: str, population: int) -> tuple[float, float, int]:
    """(median, max seconds, samples) of GET /v1/jobs/{id}, polled every 50 ms through a 2-generation job whose
    GA seeding and breeding take seconds: does the coordinator keep answering meanwhile?"""
    job = client.submit(dataset=dataset, population=population, generations=2, seed=5, permutations=0)
    latencies = []
    while True:
        t0 = time.perf_counter()
        status = client.job(job.id).status
        latencies.append(time.perf_counter() - t0)
        if status == "finished":
            return statistics.median(latencies), max(latencies), len(latencies)
        time.sleep(0.05)


def ray_system_config() -> dict:
    """``ray.init``'s system config as the measured code's service starts its head with (none before it had one)."""
    from serve_app import config

    return {"_system_config": config.RAY_SYSTEM_CONFIG} if hasattr(config, "RAY_SYSTEM_CONFIG") else {}


@contextlib.contextmanager
def local_service(data: Path, state: Path) -> Iterator[MinerClient]:
    """A local single-node service with ``data`` registered (plus any file already in ``state / "data"``), warm: every
    worker up, the dataset's tables made and one job run."""
    (state / "data").mkdir(exist_ok=True)
    (state / "data" / data.name).symlink_to(data.resolve())
    ray.init(address="local", namespace=NAMESPACE, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, **ray_system_config())
    serve.start(http_options={"host": "127.0.0.1", "port": PORT}, logging_config={"log_level": "WARNING"})
    settings = ServiceSettings(store_path=str(state / "miner.db"), data_dir=str(state / "data"),
                               upload_dir=str(state / "uploads"), token="bench")
    serve.run(build_app_with(settings, RuntimeConfig()), name="miner", route_prefix="/")
    try:
        with MinerClient(f"http://127.0.0.1:{PORT}", "bench") as client:
            while client.cluster().workers < os.cpu_count():
                time.sleep(0.2)
            service_run(client, data.name.split(".")[0], 20, 1)  # warm the report path and the workers' tables
            yield client
    finally:
        serve.shutdown()
        ray.shutdown()


def end_to_end(data: Path) -> dict[str, float | str]:
    """Seconds for the issue's end-to-end jobs with the code at ``REPO``: 1000 x 200 (``permutations`` 0, so the
    search and its random baseline) in-process on every core and through the service, and ``VERDICT_JOB`` (the
    verdict's 19 shuffled copies included) through the service, with its verdict."""
    candles = load_candles(data)
    mine(candles, MinerSettings(population=20, generations=1, permutations=0), threads=os.cpu_count())  # compiled
    started = time.perf_counter()
    mine(candles, MinerSettings(population=1000, generations=200, seed=11, permutations=0), threads=os.cpu_count())
    out: dict[str, float | str] = {"in_process_s": time.perf_counter() - started}
    dataset = data.name.split(".")[0]
    with local_service(data, Path(tempfile.mkdtemp(prefix="miner-bench-"))) as client:
        out["service_s"] = service_run(client, dataset, 1000, 200)[1]
        started = time.time()
        job = client.submit(dataset=dataset, **VERDICT_JOB)
        client.wait(job.id)
        out["default_s"] = time.time() - started
        out["verdict"] = client.result(job.id).validation.evidence
    return out


def before_and_after(commit: str, data: Path) -> None:
    """The end-to-end jobs with the code at ``commit`` (a child process on a worktree), then with this tree."""
    with tempfile.TemporaryDirectory(prefix="miner-before-") as folder:
        tree = Path(folder) / "tree"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(tree), commit], check=True,
                       capture_output=True)
        try:
            child = subprocess.run([sys.executable, __file__, "--end-to-end-json", "--data", str(data)],
                                   env={**os.environ, "BENCH_ENGINE_ROOT": str(tree), "PYTHONPATH": str(tree)},
                                   cwd=tree, capture_output=True, text=True)  # Ray's workers import from the cwd
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(tree)], check=False)
    if child.returncode != 0:
        sys.exit(f"the run at {commit} failed:\n{child.stderr[-4000:]}")
    before = json.loads(child.stdout.strip().splitlines()[-1])
    after = end_to_end(data)
    rows = []
    for key, name in (("in_process_s", "1000 x 200 job (permutations 0), in-process on all cores: seconds"),
                      ("service_s", "1000 x 200 job (permutations 0), service: submit -> finished, seconds"),
                      ("default_s", "1000 x 30 job (the default), 19 shuffled copies, service: seconds")):
        rows.append((name, f"{before[key]:.1f} -> {after[key]:.1f} ({before[key] / after[key]:.2f}x)"))
    rows += [("default job's verdict, before", before["verdict"]), ("default job's verdict, after", after["verdict"])]
    print_table(f"end to end, before ({commit}) -> after (this tree); data: {data.name}; {os.cpu_count()} CPUs",
                rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--quick", action="store_true", help="smaller jobs, no 1000 x 200 run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the service / in-process comparison (one job each way per round)")
    parser.add_argument("--before", metavar="COMMIT", help="print the end-to-end table: COMMIT's code, then this")
    parser.add_argument("--end-to-end-json", action="store_true", help=argparse.SUPPRESS)  # the child of --before
    parser.add_argument("--efficiency", type=int, metavar="ROUNDS",
                        help="only the 1/11 rows, ROUNDS times each (400 and 1000 genomes x 30, and a 1000 x 30 job's "
                             "validation), one row per job")
    args = parser.parse_args()
    data = Path(args.data)
    if args.end_to_end_json:
        print(json.dumps(end_to_end(data)))
        return
    if args.before:
        before_and_after(args.before, data)
        return
    candles = load_candles(data)
    population, lengths = (200, (4,)) if args.quick else (400, (10, 30))

    state = Path(tempfile.mkdtemp(prefix="miner-bench-"))
    (state / "data").mkdir()
    dataset = data.name.split(".")[0]  # the registry's name: the file's, without .csv or .csv.gz
    short = f"{dataset}_1of11"
    short_bars = cut_dataset(data, state / "data" / f"{short}.csv", 1 / 11)
    rows: list[tuple[str, str]] = []
    if args.efficiency:
        with local_service(data, state) as client:
            service_run(client, short, 20, 1)  # the short dataset's tables, made once
            # (population, generations, permutations): the search alone at two sizes, then a default job's validation
            # (the random baseline and 19 shuffled copies' searches, 4 at once), ~95 % of that job's backtests
            kinds = {"400 x 30": (400, 30, 0), "1000 x 30": (1000, 30, 0),
                     "1000 x 30, validation of 19 permutations": (1000, 30, 19)}
            runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
            for round_ in range(args.efficiency):
                for kind, done in runs.items():
                    done.append(busy_run(client, short, *kinds[kind]))
                    rows.append((f"round {round_ + 1}: {kind} on 1/11: wall / busy / coordinator CPU per gen.",
                                 efficiency_cells(done[-1])))
        for kind, done in runs.items():
            _, generations, permutations = kinds[kind]
            median = {key: statistics.median(run[key] for run in done) for key in done[0]}
            rows.append((f"median of {len(done)}: {kind} on 1/11", efficiency_cells(median)))
            rows.append((f"median of {len(done)}: {kind} on 1/11, CPU per generation",
                         cpu_cells(median, generations * (permutations + 1))))
        print_table(f"data: 1/11 of {candles.describe()}; {os.cpu_count()} CPUs", rows)
        return
    with local_service(data, state) as client:
        tester = ThreadedBacktester(candles, MinerSettings().costs, threads=os.cpu_count())
        tester.local.features.ensure_menu(DEFAULT_PERIOD_MENU)
        local_run(tester, 20, 1)
        service_run(client, dataset, 20, 1)  # the workers' tables for this dataset, made once, as in-process above

        # both warm; rounds alternate the two, so that the machine's drift hits both sides of each round's ratio. The
        # default job's length (30 generations) measures throughput; a 10-generation job is 0.25 s here, and a job's
        # first and last epochs, where a worker waits for the ring (docs/performance.md), weigh three times as much
        for length in lengths:
            service_times, local_times = [], []
            for _ in range(args.rounds):
                service_times.append(service_run(client, dataset, population, length)[0])
                local_times.append(local_run(tester, population, length))
            evaluations = population * length
            ratios = [local / service for local, service in zip(local_times, service_times, strict=True)]
            rows += [(f"in-process engine, {os.cpu_count()} threads: evaluations/s ({population} x {length}, "
                      f"median of {args.rounds})", f"{evaluations / statistics.median(local_times):,.0f}"),
                     (f"service, {client.cluster().workers} workers: evaluations/s (same job, median of "
                      f"{args.rounds})", f"{evaluations / statistics.median(service_times):,.0f}"),
                     (f"service / in-process at {population} x {length} (median of the rounds' ratios; each round's)",
                      f"{statistics.median(ratios):.0%} ({', '.join(f'{r:.0%}' for r in ratios)})")]

        # each generation's compute as 22 workers would see it on the whole file: the same job on 1/11 of the bars
        service_run(client, short, 20, 1)  # the short dataset's tables, made once
        for size in (400, 1000):
            run = busy_run(client, short, size, 10 if args.quick else 30)
            rows += [(f"{size}-genome job on {short_bars:,} bars (1/11): workers busy / idle per generation",
                      f"{run['busy']:.0%} / {run['idle_s'] * 1000:.1f} ms ({run['wall_s']:.1f} s)"),
                     (f"{size}-genome job on 1/11: coordinator CPU per generation / share of the cores",
                      f"{run['cpu coordinator'] * 1000:.1f} ms / {run['coordinator_share']:.0%}")]

        to_start, to_batch = first_event_latency(client, dataset, 5)
        rows += [("warm service: submit -> job_started event (median of 5)", f"{to_start * 1000:.0f} ms"),
                 ("warm service: submit -> first batch result (median of 5)", f"{to_batch * 1000:.0f} ms")]

        coordinator = ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
        memory = ray.get(coordinator.worker_memory.remote())
        rows += [("worker RSS, median (MB)", f"{statistics.median(m['rss'] for m in memory) / 1e6:.0f}"),
                 ("worker private memory (USS), median (MB)",
                  f"{statistics.median(m['uss'] for m in memory) / 1e6:.0f}"),
                 ("candle bytes owned privately by workers (object-store views: 0)",
                  f"{sum(m['candles_private_bytes'] for m in memory):,}"),
                 ("indicator tables owned privately by workers (shared views: 0)",
                  f"{sum(m['indicator_private_bytes'] for m in memory):,}")]

        if not args.quick:
            median_s, max_s, samples = status_latency_while_breeding(client, dataset, 20_000)
            rows += [(f"job status while a 20,000 x 2 job seeds and breeds: median / max ({samples} polls)",
                      f"{median_s * 1000:.0f} / {max_s * 1000:.0f} ms")]
            mining_s, total_s = service_run(client, dataset, 1000, 200)
            rows += [("large job 1000 x 200 on all candles: submit -> finished", f"{total_s:.1f} s"),
                     ("large job: evaluations/s while mining", f"{200_000 / mining_s:,.0f}")]

    print_table(f"data: {candles.describe()}; {os.cpu_count()} CPUs", rows)

if __name__ == "__main__":
    main()
