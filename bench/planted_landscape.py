"""How findable is the planted edge? The fitness of the hand-written planted rule's neighbours.

    .venv/bin/python bench/planted_landscape.py [--seeds 0,1,2]

For each seed, ``engine.planted.calibrated_planted_candles(seed)`` at the default job settings (folds,
min_trades, evaluator, costs): the planted rule (long when roc(10) < -1.5, stop 1.5 %, trailing 1.5 %, target
3 %) and its neighbours (ROC period 5-20, threshold -0.75 to -2, four exit settings; RSI below 20-30), each
scored as the search would score it. A search is guided by neighbours that score well; where only the exact
rule does, finding it is luck (docs/research.md). Then ``--random`` genomes drawn from the job's genome space as the
search's first generation draws them: how many per 10,000 score at least half the rule's fitness (the needle's
size: a search of 3,000 evaluations that samples at that rate finds one with probability 1 - (1 - rate)^3000).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.backtester import LocalBacktester
from engine.genome import ConstantOperand, IndicatorOperand, Rule, encode
from engine.miner import MiningSession, evaluate_folds
from engine.planted import PLANTED_RULE, calibrated_planted_candles
from engine.settings import RISK_PRESETS, MinerSettings
from engine.space import GenomeSpace

EXITS = ((0.015, 0.03, 0.015), (0.0, 0.0, 0.0), (0.03, 0.0, 0.0), (0.02, 0.04, 0.0))  # stop, target, trailing


def neighbours() -> list[tuple[str, object]]:
    """(name, genome): the planted rule first, then its neighbours (the rule itself left out of them)."""
    out = [("the planted rule", PLANTED_RULE)]
    for period, threshold, (stop, target, trail) in itertools.product((5, 7, 10, 14, 20), (-0.75, -1.0, -1.5, -2.0),
                                                                       EXITS):
        rule = Rule(left=IndicatorOperand(indicator="roc", period=period), op="<",
                    right=ConstantOperand(constant=threshold))
        out.append((f"roc({period}) < {threshold:g}, stop {stop:.1%}, target {target:.1%}, trail {trail:.1%}",
                    PLANTED_RULE.model_copy(update=dict(entry=[rule], stop_loss=stop, take_profit=target,
                                                        trailing_stop=trail))))
    for period, level in itertools.product((7, 14, 20), (20, 25, 30)):
        rule = Rule(left=IndicatorOperand(indicator="rsi", period=period), op="<",
                    right=ConstantOperand(constant=level))
        out.append((f"rsi({period}) < {level}, planted exits", PLANTED_RULE.model_copy(update=dict(entry=[rule]))))
    planted = encode(PLANTED_RULE)
    return out[:1] + [(name, g) for name, g in out[1:] if not np.array_equal(encode(g), planted)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--random", type=int, default=20_000, help="random genomes per seed (0: none)")
    args = parser.parse_args()
    names, genomes = zip(*neighbours(), strict=True)
    population = np.stack([encode(g) for g in genomes])
    print(f"{'seed':>4}  {'rule':>6}  {'best other':>10}  {'others > 0.5':>12}  {'others >= rule/2':>16}  "
          f"{'under min_trades':>16}  {'random >= rule/2':>16}  {'best random':>11}  best other")
    for seed in (int(s) for s in args.seeds.split(",")):
        candles = calibrated_planted_candles(seed=seed)
        settings = MinerSettings(seed=seed)
        session = MiningSession(len(candles), candles.fingerprint, settings)
        metrics = evaluate_folds(LocalBacktester(candles, settings.costs), population, session.folds,
                                 settings.batch_size, lambda: False, lambda *_: None)
        fitness = session.fitness(metrics)
        rule = fitness[0]  # the first neighbour is the planted rule itself
        others = fitness[1:]
        best = int(np.argmax(others)) + 1
        drawn = GenomeSpace(RISK_PRESETS[settings.risk], settings.period_menu).random_population(
            args.random, np.random.default_rng(seed)) if args.random else population[:0]
        scores = session.fitness(evaluate_folds(LocalBacktester(candles, settings.costs), drawn, session.folds,
                                                settings.batch_size, lambda: False, lambda *_: None))
        rate = f"{(scores >= rule / 2).mean() * 1e4:.1f} per 10k" if args.random else "-"
        best_random = f"{scores.max():+.2f}" if args.random else "-"
        print(f"{seed:>4}  {rule:>+6.2f}  {others.max():>+10.2f}  {(others > 0.5).mean():>12.0%}  "
              f"{(others >= rule / 2).mean():>16.0%}  {(others < -1e9).mean():>16.0%}  {rate:>16}  {best_random:>11}"
              f"  {names[best]}")


if __name__ == "__main__":
    main()
