"""Does the verdict tell a real edge from luck? Mines planted-edge candles, random walks and the real BTC file.

    .venv/bin/python bench/research.py [--seeds 10] [--threads N] [--data PATH]

For each of seeds 0-9 (fixed here) it runs a job at the default job settings (``MinerSettings()`` with only the
seed changed: population, generations, folds, min_trades, permutations, costs and evaluator all at their
defaults) on three kinds of data and prints one row per job and a summary:

- planted: ``engine.planted.calibrated_planted_candles(seed)``, 50,000 bars with a persistent edge whose
  hand-written rule has a t-statistic of 4 +- 0.2 after default costs on the training window (printed per seed),
  with the fitness that rule itself gets under the job's scoring and the p-value it would get against the same
  shuffled copies if the search had found it (the power of the test, apart from the search's luck);
- random walk: ``engine.planted.random_walk_candles(seed)``, the same volatility and no edge by construction;
- BTC: the real BTC-USD 5-minute file (the seed changes only the search).

Goals (issue 11): on random walks ``no_edge`` in at least 9 of 10; on planted data ``edge`` in at least 9 of 10
and a positive holdout return in at least 9 of 10; on BTC, whatever the truth is. docs/research.md has figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.backtester import LocalBacktester  # noqa: E402
from engine.candles import Candles, load_candles  # noqa: E402
from engine.genome import encode  # noqa: E402
from engine.miner import MiningResult, MiningSession, evaluate_folds, mine  # noqa: E402
from engine.planted import (  # noqa: E402
    PLANTED_RULE,
    calibrated_planted_candles,
    planted_rule_t_stat,
    random_walk_candles,
)
from engine.settings import MinerSettings  # noqa: E402
from engine.validation import permutation_p_value  # noqa: E402

DEFAULT_DATA = REPO / "data" / "BTC-USD_FIVE_MINUTE.csv.gz"
SEEDS = range(10)


def row(kind: str, seed: int, result: MiningResult, seconds: float, note: str) -> str:
    v, b = result.validation, result.baselines
    holdout = result.holdout_metrics["return_pct"] if result.holdout_metrics else float("nan")
    p = "-" if v.p_value is None else f"{v.p_value:.2f}"
    beats = "yes" if b.random_best_fitness is not None and result.fitness > b.random_best_fitness else "no"
    trades = int(result.train_metrics["trades"])
    return (f"{kind:<12}{seed:>4}  {v.verdict:<13}{p:>5}  {result.fitness:>+8.3f}  {b.random_best_fitness:>+8.3f}"
            f"  {beats:<5}{trades:>7}  {holdout:>+8.2f}  {b.buy_and_hold_holdout_pct:>+8.2f}"
            f"  {v.strategies_tried:>7,}  {seconds:>6.1f}  {note}")


def planted_rule_fitness(candles: Candles, settings: MinerSettings) -> float:
    """The fitness the hand-written planted rule gets under the job's folds, evaluator and min_trades."""
    session = MiningSession(len(candles), candles.fingerprint, settings)
    metrics = evaluate_folds(LocalBacktester(candles, settings.costs), encode(PLANTED_RULE)[None, :], session.folds,
                             1, lambda: False, lambda *_: None)
    return float(session.fitness(metrics)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="how many of seeds 0-9 to run")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the real candles (default: the shipped BTC file)")
    args = parser.parse_args()
    defaults = MinerSettings()
    print(f"default job settings: population {defaults.population}, generations {defaults.generations}, "
          f"folds {defaults.folds}, min_trades {defaults.min_trades}, permutations {defaults.permutations}, "
          f"risk {defaults.risk}, fee {defaults.costs.fee_bps:g} bps + slippage {defaults.costs.slippage_bps:g} bps; "
          f"{args.threads} threads")
    print(f"{'data':<12}{'seed':>4}  {'verdict':<13}{'p':>5}  {'fitness':>8}  {'random':>8}  {'>rnd':<5}"
          f"{'trades':>7}  {'holdout%':>8}  {'b&h %':>8}  {'tried':>7}  {'sec':>6}  note")
    btc = load_candles(args.data)
    summary: dict[str, list[MiningResult]] = {"planted": [], "random walk": [], "BTC": []}
    rule_significant = 0
    for seed in SEEDS[:args.seeds]:
        planted = calibrated_planted_candles(seed=seed)
        for kind, candles in (("planted", planted), ("random walk", random_walk_candles(seed=seed)), ("BTC", btc)):
            settings = MinerSettings(seed=seed)
            started = time.perf_counter()
            result = mine(candles, settings, threads=args.threads)
            seconds = time.perf_counter() - started
            note = ""
            if kind == "planted":
                fitness = planted_rule_fitness(candles, settings)
                p = permutation_p_value(fitness, result.validation.copies_best_fitness)
                rule_significant += p <= 0.05
                note = f"rule t {planted_rule_t_stat(candles):+.2f}, fitness {fitness:+.2f}, p {p:.2f} if found"
            print(row(kind, seed, result, seconds, note), flush=True)
            summary[kind].append(result)
    print()
    print(f"{'data':<12}  {'edge':>5}  {'no_edge':>7}  {'holdout > 0':>11}  {'holdout > b&h':>13}  {'beats random':>12}"
          f"  {'median p':>8}")
    for kind, results in summary.items():
        verdicts = [r.validation.verdict for r in results]
        holdout = [r.holdout_metrics["return_pct"] for r in results]
        print(f"{kind:<12}  {verdicts.count('edge'):>5}  {verdicts.count('no_edge'):>7}"
              f"  {sum(h > 0 for h in holdout):>11}"
              f"  {sum(h > r.baselines.buy_and_hold_holdout_pct for h, r in zip(holdout, results, strict=True)):>13}"
              f"  {sum(r.fitness > r.baselines.random_best_fitness for r in results):>12}"
              f"  {statistics.median(r.validation.p_value for r in results):>8.2f}   (of {len(results)})")
    print(f"the hand-written planted rule, had the search found it, would have had p <= 0.05 in {rule_significant} "
          f"of {len(summary['planted'])} planted jobs")


if __name__ == "__main__":
    main()
