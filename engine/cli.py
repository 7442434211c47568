"""``python -m engine`` / ``miner-local``: mine strategies in this process, no Ray, no server."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from engine import events as ev
from engine.candles import CandleDataError, load_candles
from engine.evaluator import DEFAULT_EVALUATOR, get_evaluator
from engine.layout import METRICS
from engine.miner import MiningResult, mine
from engine.settings import Costs, MinerSettings
from engine.synthetic import synthetic_candles
from schema.job import JobParameters, RiskLevel
from schema.research import research_lines

FLAGS = {"holdout_fraction": "--holdout"}  # any other parameter: --its-name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="miner-local", description=__doc__)
    parser.add_argument("--data", help="OHLCV CSV or Parquet file (default: built-in synthetic candles)")
    defaults = MinerSettings()
    for name in JobParameters.model_fields:  # a job's parameters: bounds, defaults and help from the one model
        field, default = MinerSettings.model_fields[name], getattr(defaults, name)
        kind = {"type": str.upper, "choices": [level.value for level in RiskLevel]} if name == "risk" else {
            "type": type(default)}
        parser.add_argument(FLAGS.get(name, "--" + name.replace("_", "-")), dest=name, default=default,
                            help=field.description.replace("%", "%%"), **kind)
    for name in ("fee_bps", "slippage_bps"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(Costs(), name),
                            help=Costs.model_fields[name].description.replace("%", "%%"))
    parser.add_argument("--evaluator", default=DEFAULT_EVALUATOR)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="backtest threads (default: all cores)")
    parser.add_argument("--top", type=int, default=0, metavar="N",
                        help="also list the N best strategies of the hall of fame")
    parser.add_argument("--out", default="best_strategy.json", help="where to write the result JSON")
    return parser


def _generation_line(event: ev.GenerationBest, generations: int, seconds: float) -> str:
    """The generation's best strategy (its metrics: the training folds together, each from the same cash)."""
    m = event.metrics
    return (f"gen {event.generation + 1:>3}/{generations}  fitness {event.fitness:+8.3f}  "
            f"best so far {event.best_fitness_so_far:+8.3f}  fold pnl {m['net_pnl']:+10.2f} USD  "
            f"trades {int(m['trades']):>4}  win {m['win_rate']:.0%}  dd {m['max_drawdown']:.1%}  "
            f"sharpe {m['sharpe']:+.2f}  {seconds:.2f}s")


def _summary(result: MiningResult) -> str:
    research = research_lines(result.validation, result.folds, result.profitable_folds, result.baselines,
                              result.fitness)
    lines = [research[0], f"best strategy: {result.best_genome.describe()}", f"fitness {result.fitness:+.4f}  "
             f"evaluator {result.evaluator_version}  seed {result.seed}  data {result.data_fingerprint}",
             f"{'metric':<18}{'train':>14}{'holdout':>14}"]
    for name in METRICS:
        holdout = f"{result.holdout_metrics[name]:>14.4f}" if result.holdout_metrics else f"{'-':>14}"
        lines.append(f"{name:<18}{result.train_metrics[name]:>14.4f}{holdout}")
    return "\n".join(lines + research[1:])


def _hall_of_fame(result: MiningResult, top: int) -> str:
    """The ``top`` best distinct strategies, ranked on training fitness, with their holdout beside."""
    lines = [f"hall of fame, ranked on training fitness:\n{'rank':>4} {'fitness':>9} {'train':>9} {'trades':>6} "
             f"{'holdout':>9} {'trades':>6}  strategy"]
    for rank, entry in enumerate(result.hall_of_fame[:top], 1):
        sides = [f"{m['return_pct']:>+8.2f}% {m['trades']:>6.0f}" if m else f"{'-':>9} {'-':>6}"
                 for m in (entry.train_metrics, entry.holdout_metrics)]
        lines.append(f"{rank:>4} {entry.fitness:>+9.4f} {sides[0]} {sides[1]}  {entry.strategy}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = MinerSettings(**{name: getattr(args, name) for name in JobParameters.model_fields},
                                 costs=Costs(fee_bps=args.fee_bps, slippage_bps=args.slippage_bps))
        evaluator = get_evaluator(args.evaluator)
        if args.data:
            candles = load_candles(args.data)
        else:
            candles = synthetic_candles()
            print("no --data given: mining on SYNTHETIC candles (not market data); pass --data FILE for real data")
    except ValidationError as exc:
        for error in exc.errors():
            print(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return 2
    except (CandleDataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(candles.describe())
    clock = {"t": time.perf_counter()}

    def on_event(event) -> None:
        if isinstance(event, ev.GenerationStarted):
            clock["t"] = time.perf_counter()
        elif isinstance(event, ev.GenerationBest):
            print(_generation_line(event, settings.generations, time.perf_counter() - clock["t"]), flush=True)
        elif isinstance(event, ev.ValidationStarted):
            print(f"validating: the random baseline and the same search on {event.permutations} shuffled copies "
                  "of the training data", flush=True)
        elif isinstance(event, ev.ValidationSearchFinished):
            what = "random baseline" if event.kind == "random" else f"shuffled copy {event.index}"
            print(f"validation {event.done}/{event.total}  {what}: best fitness {event.best_fitness:+.3f}", flush=True)

    try:
        result = mine(candles, settings, evaluator, threads=args.threads, on_event=on_event)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(result))
    if args.top > 0:
        print(_hall_of_fame(result, args.top))
    Path(args.out).write_text(json.dumps(result.model_dump(mode="json"), indent=2))
    print(f"result written to {args.out}")
    return 0
