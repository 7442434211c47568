"""Backtest kernel speed on the real BTC-USD 5-minute data; prints a table (docs/performance.md).

    .venv/bin/python bench/kernel.py [--data PATH] [--repeats 7]

All rows come from one run on one machine: compare ratios, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.fixed_strategy import fixed_strategy_nb  # noqa: E402
from bench.table import print_table  # noqa: E402
from engine import layout as L  # noqa: E402
from engine.backtester import LocalBacktester, Window  # noqa: E402
from engine.candles import load_candles  # noqa: E402
from engine.genome import Genome, encode  # noqa: E402
from engine.miner import mine  # noqa: E402
from engine.settings import RISK_PRESETS, Costs, MinerSettings, RiskLevel  # noqa: E402
from engine.space import GenomeSpace  # noqa: E402

DEFAULT_DATA = REPO / "data" / "BTC-USD_FIVE_MINUTE.csv.gz"
FIXED = Genome.model_validate({
    "entry": [{"left": {"field": "close"}, "op": ">", "right": {"indicator": "sma", "period": 20}},
              {"left": {"indicator": "rsi", "period": 14}, "op": "<", "right": {"constant": 70}}],
    "exit": [{"left": {"field": "close"}, "op": "<", "right": {"indicator": "sma", "period": 50}}],
    "stop_loss": 0.02, "take_profit": 0.04,
})
FIXED_COSTS = Costs(fee_bps=10, slippage_bps=0)

COMPILE_SNIPPET = """
import time
t = time.perf_counter()
from engine.backtester import LocalBacktester, Window
from engine.genome import Genome, encode
from engine.settings import Costs
from engine.synthetic import synthetic_candles
c = synthetic_candles(500, seed=1)
g = Genome.model_validate({"entry": [{"left": {"field": "close"}, "op": ">",
                                      "right": {"indicator": "sma", "period": 20}}], "stop_loss": 0.02})
LocalBacktester(c, Costs()).evaluate(encode(g)[None], Window(0, 500))
print(time.perf_counter() - t)
"""


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compile_times() -> tuple[float, float]:
    """Seconds to import and run the kernel in a fresh process: empty Numba cache, then warm cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
        run = [sys.executable, "-c", COMPILE_SNIPPET]
        cold = float(subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout)
        warm = float(subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout)
    return cold, warm


def vectorbt_per_backtest(candles, sma20, rsi14, sma50, repeats: int) -> tuple[float, float] | None:
    """Seconds per backtest with vectorbt's from_signals: one column per call, and 100 columns at once."""
    try:
        import pandas as pd
        import vectorbt as vbt
    except ImportError:
        return None
    close = pd.Series(candles.close)
    entries = pd.Series((candles.close > sma20) & (rsi14 < 70))
    exits = pd.Series(candles.close < sma50)

    def one():
        pf = vbt.Portfolio.from_signals(close, entries, exits, sl_stop=0.02, tp_stop=0.04, fees=0.001,
                                        init_cash=10_000, high=pd.Series(candles.high), low=pd.Series(candles.low),
                                        open=pd.Series(candles.open), freq="5min")
        return pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown()

    wide = 100
    close_w = pd.DataFrame(np.repeat(candles.close[:, None], wide, axis=1))

    def many():
        pf = vbt.Portfolio.from_signals(close_w, entries.to_numpy()[:, None].repeat(wide, 1),
                                        exits.to_numpy()[:, None].repeat(wide, 1), sl_stop=0.02, tp_stop=0.04,
                                        fees=0.001, init_cash=10_000, freq="5min")
        return pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown()

    one()
    many()
    return median_time(one, repeats), median_time(many, max(3, repeats // 2)) / wide


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--genomes", type=int, default=1_000)
    args = parser.parse_args()

    candles = load_candles(args.data)
    n = len(candles)
    rows: list[tuple[str, str]] = []
    cold, warm = compile_times()
    rows += [("compile, cold (empty Numba cache, new process)", f"{cold:.2f} s"),
             ("compile, warm (cached, new process)", f"{warm:.2f} s")]

    space = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], MinerSettings().period_menu)
    rng = np.random.default_rng(0)
    population = space.random_population(args.genomes, rng)
    tester = LocalBacktester(candles, Costs())
    window = Window(0, n)
    tester.evaluate(population, window)  # compile + compute every indicator once
    t_random = median_time(lambda: tester.evaluate(population, window), args.repeats) / args.genomes
    rows += [(f"random genomes: µs per backtest ({args.genomes} per batch, {n} bars)", f"{t_random * 1e6:.0f}"),
             ("random genomes: bars per second per core", f"{n / t_random / 1e6:.0f} M")]

    fixed_tester = LocalBacktester(candles, FIXED_COSTS)
    batch = np.repeat(encode(FIXED)[None, :], 200, axis=0)
    metrics = fixed_tester.evaluate(batch, window)
    t_batch = median_time(lambda: fixed_tester.evaluate(batch, window), args.repeats) / batch.shape[0]
    store = fixed_tester.features
    sma20, rsi14, sma50 = (store.matrix[store.lookup[k, p]] for k, p in ((L.SMA, 20), (L.RSI, 14), (L.SMA, 50)))
    loop_args = (candles.open, candles.high, candles.low, candles.close, sma20, rsi14, sma50,
                 FIXED_COSTS.fee, FIXED_COSTS.slippage, FIXED_COSTS.initial_cash, candles.periods_per_year)
    loop_metrics = fixed_strategy_nb(*loop_args)
    if not np.allclose(loop_metrics, metrics[0], rtol=1e-9, atol=1e-9):
        raise SystemExit(f"plain loop and kernel disagree:\n{loop_metrics}\n{metrics[0]}")
    t_loop = median_time(lambda: [fixed_strategy_nb(*loop_args) for _ in range(50)], args.repeats) / 50
    rows += [("fixed strategy: batch kernel, µs per backtest", f"{t_batch * 1e6:.0f}"),
             ("fixed strategy: plain single-strategy Numba loop, µs", f"{t_loop * 1e6:.0f}"),
             ("fixed strategy: kernel speed relative to the plain loop", f"{t_loop / t_batch:.2f}x")]
    vbt_times = vectorbt_per_backtest(candles, sma20, rsi14, sma50, args.repeats)
    if vbt_times is None:
        rows.append(("vectorbt from_signals", "not installed (pip install -e '.[bench]')"))
    else:
        one, many = vbt_times
        rows += [("vectorbt from_signals, one column per call, µs", f"{one * 1e6:.0f}"),
                 ("vectorbt from_signals, 100 columns per call, µs per backtest", f"{many * 1e6:.0f}"),
                 ("batch kernel speed-up vs vectorbt (one / 100 columns)",
                  f"{one / t_batch:.0f}x / {many / t_batch:.0f}x")]

    settings = MinerSettings(population=20, generations=5, risk="LOW", seed=1)
    mine(candles, settings)  # warm-up: indicators cached per process are rebuilt per job on purpose
    t_job = median_time(lambda: mine(candles, settings), max(3, args.repeats // 2))
    rows.append(("20 x 5 mining job on all candles, warm (incl. indicators)", f"{t_job:.2f} s"))

    print_table(f"data: {candles.describe()}", rows)

if __name__ == "__main__":
    main()
