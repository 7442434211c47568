"""How large a search finds the planted edge? The search alone at several budgets, and its best on shuffled copies.

    .venv/bin/python bench/budget.py [--budgets 100x30,1000x30] [--islands 8] [--seeds 10] [--copies 0] [--threads N]

For each budget (population x generations) and each of seeds 0-9 (fixed here), one search (no permutation test) on
``engine.planted.calibrated_planted_candles(seed)`` at the default job settings otherwise; a seed counts as found
when the search's best training fitness reaches ``FOUND`` (1.05: above the best of every shuffled copy measured in
docs/research.md, and near the hand-written rule's own 1.1-1.7). With ``--copies K`` it also runs the same search on
K shuffled copies of each seed's training bars (the permutation test's copies 1..K) and reports their best: a
larger search must not find much more in noise, or the verdict's bar rises with it. docs/research.md has figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search import search_best
from engine.miner import MiningSession
from engine.planted import calibrated_planted_candles
from engine.settings import MinerSettings
from engine.validation import ValidationTask

SEEDS = range(10)
FOUND = 1.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="100x30,1000x30", help="population x generations, comma-separated")
    parser.add_argument("--islands", type=int, default=MinerSettings().islands)
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="how many of seeds 0-9 to run")
    parser.add_argument("--copies", type=int, default=0, help="shuffled copies per seed (0: the real data only)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    seeds = SEEDS[:args.seeds]
    candles = {seed: calibrated_planted_candles(seed=seed) for seed in seeds}
    print(f"islands {args.islands}")
    print(f"{'budget':>10}  {'backtests':>9}  {'found':>6}  {'best per seed':<{7 * len(seeds)}}  copies' best: "
          "median, max")
    for budget in args.budgets.split(","):
        population, generations = (int(n) for n in budget.split("x"))
        found, per_seed, copies = 0, [], []
        for seed in seeds:
            settings = MinerSettings(population=population, generations=generations, seed=seed,
                                     permutations=args.copies, islands=args.islands)
            session = MiningSession(len(candles[seed]), candles[seed].fingerprint, settings)
            per_seed.append(search_best(session, candles[seed], settings, args.threads))
            found += per_seed[-1] >= FOUND
            for index in range(1, args.copies + 1):
                task = ValidationTask("shuffled", index)
                copies.append(search_best(session.task_run(task), session.task_data(task, candles[seed]), settings,
                                   args.threads))
        null = f"{statistics.median(copies):+.2f}, {max(copies):+.2f}" if copies else "-"
        print(f"{budget:>10}  {population * generations:>9,}  {found:>3}/{len(seeds):<2}  "
              f"{' '.join(f'{b:+6.2f}' for b in per_seed)}  {null}", flush=True)


if __name__ == "__main__":
    main()
