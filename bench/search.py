"""Search quality: the GA's best training fitness against the random baseline and the previous GA, equal budgets.

    .venv/bin/python bench/search.py [--population 100] [--generations 30] [--previous COMMIT] [--threads N]

For seeds 0-9 (fixed here), each risk level (LOW, MEDIUM, HIGH) and two datasets (the real BTC file, and
``engine.planted.calibrated_planted_candles(seed)``: the planted rule at t = 4), it runs three searches of the
same budget (population x generations backtests) with the job's default scoring (folds, min_trades,
``balanced``) and ``permutations`` 0:

- **new**: this tree's search (``engine.ga.GeneticSearch``: islands each starting at its own exit scale, duplicate
  elimination, restarts);
- **random**: the random baseline defined in ``engine.baselines`` (``RandomSearch``);
- **previous**: the GA of commit ``--previous``, checked out with ``git worktree`` into a temporary folder and
  run there in a subprocess on the same candles (saved to ``.npy`` files, so both trees see identical bars).

It prints one row per run and a summary per dataset and risk. Goals (issue 17): new beats random in every seed,
risk and dataset; on planted data the worst seed is no lower than median - 0.25 x |median|.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("BENCH_ENGINE_ROOT", REPO))  # the tree whose engine is imported (a worktree in --worker)
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from engine.backtester import LocalBacktester, ThreadedBacktester  # noqa: E402
from engine.candles import Candles, candles_from_arrays, load_candles  # noqa: E402
from engine.miner import MiningSession, run_search  # noqa: E402
from engine.settings import MinerSettings  # noqa: E402

DEFAULT_DATA = REPO / "data" / "BTC-USD_FIVE_MINUTE.csv.gz"
# The search the "previous" column runs: its own whole engine, evaluator included, so it must score like this tree
# (c39cbf4, the single-population GA, scores with the evaluator before `balanced` moved to bar_z: another scale).
# 7cfc2db: islands and bar_z as now, breeding still a per-child Python loop.
PREVIOUS = "7cfc2db"
SEEDS = range(10)
RISKS = ("LOW", "MEDIUM", "HIGH")
COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


def runs() -> list[tuple[str, str, int]]:
    return [(data, risk, seed) for data in ("BTC", "planted") for risk in RISKS for seed in SEEDS]


def save_candles(candles: Candles, folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in COLUMNS:
        np.save(folder / f"{name}.npy", np.asarray(getattr(candles, name)))


def read_candles(folder: Path) -> Candles:
    return candles_from_arrays(*(np.load(folder / f"{name}.npy") for name in COLUMNS), source=folder.name)


def search_best(run, candles: Candles, settings: MinerSettings, threads: int) -> float:
    """Run one search (``run``: a ``MiningSession`` or any search run of it) to its end on ``candles`` with
    ``threads`` backtest threads; its best training fitness. Only calls that ``PREVIOUS`` has too."""
    tester = ThreadedBacktester(candles, settings.costs, threads) if threads > 1 else LocalBacktester(candles,
                                                                                                     settings.costs)
    try:
        run_search(run, tester, settings.batch_size, lambda: False)
    finally:
        if threads > 1:
            tester.close()
    return float(run.search.best_fitness)


def best_fitness(candles: Candles, settings: MinerSettings, threads: int, random: bool = False) -> float:
    """Best training fitness of one search; the random baseline when ``random`` (this tree only)."""
    session = MiningSession(len(candles), candles.fingerprint, settings)
    run = session
    if random:
        from engine.baselines import RandomSearch
        from engine.miner import SearchRun
        run = SearchRun(RandomSearch(settings), session.folds, session.evaluator, settings.min_trades)
    return search_best(run, candles, settings, threads)


def settings_for(risk: str, seed: int, args) -> MinerSettings:
    return MinerSettings(population=args.population, generations=args.generations, risk=risk, seed=seed,
                         permutations=0)


def worker(args) -> None:
    """Run the GA of the tree at BENCH_ENGINE_ROOT on every saved dataset; print {"data/risk/seed": fitness}."""
    folder = Path(args.worker)
    out = {}
    for data, risk, seed in runs():
        candles = read_candles(folder / (data if data == "BTC" else f"planted-{seed}"))
        out[f"{data}/{risk}/{seed}"] = best_fitness(candles, settings_for(risk, seed, args), args.threads)
    print(json.dumps(out))


def previous_ga(args, folder: Path) -> dict[str, float]:
    tree = folder / "previous"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.previous], check=True,
                   capture_output=True)
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(folder), "--population",
             str(args.population), "--generations", str(args.generations), "--threads", str(args.threads)],
            cwd=tree, env={**os.environ, "BENCH_ENGINE_ROOT": str(tree), "PYTHONPATH": str(tree)},
            check=True, capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


def summary(results: list[dict]) -> list[str]:
    lines = [f"{'data':<9}{'risk':<8}{'new>random':>11}{'new>prev':>10}{'median new':>12}{'worst new':>11}"
             f"{'median prev':>13}{'consistent':>12}"]
    for data in ("BTC", "planted"):
        for risk in RISKS:
            rows = [r for r in results if r["data"] == data and r["risk"] == risk]
            new = [r["new"] for r in rows]
            median = statistics.median(new)
            consistent = min(new) >= median - 0.25 * abs(median)
            lines.append(f"{data:<9}{risk:<8}{sum(r['new'] > r['random'] for r in rows):>8}/10"
                         f"{sum(r['new'] > r['previous'] for r in rows):>7}/10{median:>+12.3f}{min(new):>+11.3f}"
                         f"{statistics.median(r['previous'] for r in rows):>+13.3f}{'yes' if consistent else 'no':>12}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, default=MinerSettings().population)
    parser.add_argument("--generations", type=int, default=MinerSettings().generations)
    parser.add_argument("--previous", default=PREVIOUS, help="commit whose GA is the 'previous' column")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from engine.planted import calibrated_planted_candles

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        datasets = {"BTC": load_candles(args.data)} | {f"planted-{s}": calibrated_planted_candles(seed=s)
                                                           for s in SEEDS}
        for name, candles in datasets.items():
            save_candles(candles, folder / name)
        previous = previous_ga(args, folder)
        print(f"budget {args.population} x {args.generations} = {args.population * args.generations:,} backtests "
              f"per search; previous GA = {args.previous}; {args.threads} threads\n")
        print(f"{'data':<9}{'risk':<8}{'seed':>4}{'new':>9}{'random':>9}{'previous':>10}")
        results = []
        for data, risk, seed in runs():
            candles = datasets["BTC" if data == "BTC" else f"planted-{seed}"]
            settings = settings_for(risk, seed, args)
            row = {"data": data, "risk": risk, "seed": seed, "new": best_fitness(candles, settings, args.threads),
                   "random": best_fitness(candles, settings, args.threads, random=True),
                   "previous": previous[f"{data}/{risk}/{seed}"]}
            results.append(row)
            print(f"{data:<9}{risk:<8}{seed:>4}{row['new']:>+9.3f}{row['random']:>+9.3f}{row['previous']:>+10.3f}",
                  flush=True)
    print()
    print("\n".join(summary(results)))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
