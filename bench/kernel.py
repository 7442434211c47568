"""Backtest kernel speed on the real BTC-USD 5-minute data's training window; prints one table (docs/performance.md).

    .venv/bin/python bench/kernel.py [--data PATH] [--repeats 7] [--old-commit 7cfc2db]

Three workloads, each timed with the batch kernel of this tree ("new") and with the batch kernel of a pinned
earlier commit ("old", checked out read-only with ``git worktree add`` into a temporary folder, run in a child
process on the same genomes and feature matrix, removed afterwards): (a) the GA's random genomes, (b) the
population of a real mining job after 20 generations, (c) the fixed reference strategy, also timed as the
hand-written single-strategy loop of ``bench/fixed_strategy.py``. The floor is one plain pass over the five
price rows of the window's feature matrix. The benchmark refuses to print unless old and new metrics are
equal bit for bit.

Times are medians over rounds of the CPU time of the timing thread (``time.thread_time``), so that time the
shared machine gives to other processes is not counted; each round times every measure once (old and new
alternate, the old kernel's child process staying up), and both processes are pinned to the same core. A ratio
is the median of the rounds' ratios, so that a change in the machine's speed between rounds (this VM drifts by
10-30 %) hits both sides of each ratio alike. All rows come from one run on one machine: compare ratios, not
absolute numbers across runs.
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
from numba import njit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.fixed_strategy import fixed_strategy_nb  # noqa: E402
from bench.table import print_table  # noqa: E402
from engine import layout as L  # noqa: E402
from engine.backtester import LocalBacktester, Window, split_windows  # noqa: E402
from engine.candles import load_candles  # noqa: E402
from engine.genome import Genome, encode  # noqa: E402
from engine.kernel_batch import backtest_batch_nb  # noqa: E402
from engine.miner import MiningSession, mine  # noqa: E402
from engine.settings import RISK_PRESETS, Costs, MinerSettings, RiskLevel  # noqa: E402
from engine.space import GenomeSpace  # noqa: E402

DEFAULT_DATA = REPO / "data" / "BTC-USD_FIVE_MINUTE.csv.gz"
OLD_COMMIT = "7cfc2db"  # the last commit with the per-genome batch kernel (engine.kernel.backtest_batch_nb)
FIXED = Genome.model_validate({
    "entry": [{"left": {"field": "close"}, "op": ">", "right": {"indicator": "sma", "period": 20}},
              {"left": {"indicator": "rsi", "period": 14}, "op": "<", "right": {"constant": 70}}],
    "exit": [{"left": {"field": "close"}, "op": "<", "right": {"indicator": "sma", "period": 50}}],
    "stop_loss": 0.02, "take_profit": 0.04,
})
FIXED_COSTS = Costs(fee_bps=10, slippage_bps=0)
WORKLOADS = ("random", "mined", "fixed")

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

# Run in the old tree: save its batch kernel's metrics on the saved inputs, then time one call of a workload per
# line read ("random", "mined" or "fixed"), answering with the seconds per backtest, until the input ends.
OLD_SNIPPET = """
import sys, time
import numpy as np
from engine.kernel import backtest_batch_nb
data = np.load(sys.argv[1])
calls = {}
for name in ("random", "mined", "fixed"):
    calls[name] = (data[name + "_genomes"], data["matrix"], data["lookup"], *data[name + "_window"],
                   *data[name + "_costs"])
    np.save(sys.argv[1] + "." + name + ".npy", backtest_batch_nb(*calls[name]))
print("ready", flush=True)
for line in sys.stdin:
    args = calls[line.strip()]
    t = time.thread_time()
    backtest_batch_nb(*args)
    print((time.thread_time() - t) / len(args[0]), flush=True)
"""


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return statistics.median(times)


@njit(cache=True, nogil=True)
def one_pass_nb(features, start, end):
    """The floor: read the five price rows (0..4) of the feature matrix over bars [start, end) once, adding them
    up bar by bar."""
    o, h, lo, c, v = features[0], features[1], features[2], features[3], features[4]
    total = 0.0
    for i in range(start, end):
        total += o[i] + h[i] + lo[i] + c[i] + v[i]
    return total


def compile_times() -> tuple[float, float]:
    """Seconds to import and run the kernel in a fresh process: empty Numba cache, then warm cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
        run = [sys.executable, "-c", COMPILE_SNIPPET]
        cold = float(subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout)
        warm = float(subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout)
    return cold, warm


def mined_population(candles, generations: int, size: int) -> np.ndarray:
    """The population a default job asks for after ``generations`` generations (GA on the training folds)."""
    settings = MinerSettings(population=size, generations=generations + 1, seed=1)
    session = MiningSession(len(candles), candles.fingerprint, settings)  # folds inside its training window
    tester = LocalBacktester(candles, Costs())
    for _ in range(generations):
        population = session.population()
        metrics = np.stack([tester.evaluate(population, window) for window in session.folds], axis=1)
        session.tell_generation(metrics)
    return session.population()


class OldKernel:
    """The batch kernel of ``commit``, in a git worktree and a child process, timed one call at a time."""

    def __init__(self, inputs: dict, commit: str):
        self._folder = tempfile.TemporaryDirectory()
        self.tree = Path(self._folder.name) / "oldkernel"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(self.tree), commit], check=True,
                       capture_output=True)
        data = Path(self._folder.name) / "inputs.npz"
        np.savez(data, **inputs)
        self.child = subprocess.Popen([sys.executable, "-c", OLD_SNIPPET, str(data)], cwd=self.tree, text=True,
                                      env={**os.environ, "PYTHONPATH": str(self.tree)}, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE)
        if self.child.stdout.readline().strip() != "ready":
            self.close()
            raise SystemExit(f"the old kernel at {commit} failed to start")
        self.metrics = {name: np.load(f"{data}.{name}.npy") for name in WORKLOADS}

    def time(self, name: str) -> float:
        """Seconds per backtest of one call on workload ``name``."""
        self.child.stdin.write(name + "\n")
        self.child.stdin.flush()
        return float(self.child.stdout.readline())

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait()
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.tree)], check=True)
        self._folder.cleanup()


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
    parser.add_argument("--old-commit", default=OLD_COMMIT, help="the commit whose batch kernel is 'old'")
    args = parser.parse_args()

    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # this process and the old kernel's child: one core
    full = load_candles(args.data)
    train, _ = split_windows(len(full), 0.2)
    candles = full.slice(0, train.end)  # the training window and nothing after it
    window = Window(0, train.end)
    rows: list[tuple[str, str]] = []
    cold, warm = compile_times()
    rows += [("compile, cold (empty Numba cache, new process)", f"{cold:.2f} s"),
             ("compile, warm (cached, new process)", f"{warm:.2f} s")]

    space = GenomeSpace(RISK_PRESETS[RiskLevel.MEDIUM], MinerSettings().period_menu)
    populations = {"random": space.random_population(args.genomes, np.random.default_rng(0)),
                   "mined": mined_population(full, 20, args.genomes),
                   "fixed": np.repeat(encode(FIXED)[None, :], 200, axis=0)}
    store = LocalBacktester(candles, Costs()).features
    for population in populations.values():
        store.prepare(population)
    matrix, lookup = store.matrix, store.lookup
    costs = {name: (Costs() if name != "fixed" else FIXED_COSTS) for name in WORKLOADS}
    inputs = {"matrix": matrix, "lookup": lookup}
    for name in WORKLOADS:
        c = costs[name]
        inputs |= {f"{name}_genomes": populations[name], f"{name}_window": np.array([window.start, window.end]),
                   f"{name}_costs": np.array([c.fee, c.slippage, c.initial_cash, candles.periods_per_year])}

    calls = {name: (populations[name], matrix, lookup, *inputs[f"{name}_window"], *inputs[f"{name}_costs"])
             for name in WORKLOADS}
    new_metrics = {name: backtest_batch_nb(*calls[name]) for name in WORKLOADS}
    columns = [matrix[lookup[k, 0]] for k in (L.OPEN, L.HIGH, L.LOW, L.CLOSE, L.VOLUME)]
    one_pass_nb(matrix, window.start, window.end)
    sma20, rsi14, sma50 = (matrix[lookup[k, p]] for k, p in ((L.SMA, 20), (L.RSI, 14), (L.SMA, 50)))
    loop_args = (*columns[:4], sma20, rsi14, sma50, FIXED_COSTS.fee, FIXED_COSTS.slippage, FIXED_COSTS.initial_cash,
                 candles.periods_per_year)
    if not np.allclose(fixed_strategy_nb(*loop_args), new_metrics["fixed"][0], rtol=1e-9, atol=1e-9):
        raise SystemExit(f"plain loop and kernel disagree:\n{fixed_strategy_nb(*loop_args)}\n{new_metrics['fixed'][0]}")

    # every measure once per round, rounds repeated: a change in the machine's load hits all of them alike
    old = OldKernel(inputs, args.old_commit)
    samples: dict[str, list[float]] = {}
    try:
        for name in WORKLOADS:
            if not np.array_equal(old.metrics[name].view(np.int64), new_metrics[name].view(np.int64)):
                raise SystemExit(f"{name}: the old and new kernels' metrics differ")
        for _ in range(args.repeats):
            for name in WORKLOADS:
                samples.setdefault(f"new {name}", []).append(
                    median_time(lambda a=calls[name]: backtest_batch_nb(*a), 1) / len(calls[name][0]))
                samples.setdefault(f"old {name}", []).append(old.time(name))
            samples.setdefault("floor", []).append(
                median_time(lambda: [one_pass_nb(matrix, window.start, window.end) for _ in range(20)], 1) / 20)
            samples.setdefault("loop", []).append(
                median_time(lambda: [fixed_strategy_nb(*loop_args) for _ in range(5)], 1) / 5)
    finally:
        old.close()
    median = {key: statistics.median(values) for key, values in samples.items()}
    new_times = {name: median[f"new {name}"] for name in WORKLOADS}
    old_times = {name: median[f"old {name}"] for name in WORKLOADS}
    floor, t_loop = median["floor"], median["loop"]

    def ratio(top: str, bottom: str) -> float:
        """Median over rounds of samples[top] / samples[bottom]."""
        return statistics.median(a / b for a, b in zip(samples[top], samples[bottom], strict=True))

    def us(seconds: float) -> str:
        return f"{seconds * 1e6:,.0f}"

    labels = {"random": f"(a) GA's random genomes ({args.genomes})",
              "mined": f"(b) mined population after 20 generations ({args.genomes})",
              "fixed": "(c) fixed reference strategy (200 copies)"}
    for name in WORKLOADS:
        rows += [(f"{labels[name]}: µs per backtest, old / new", f"{us(old_times[name])} / {us(new_times[name])}"),
                 (f"{labels[name]}: new speed-up over old", f"**{ratio(f'old {name}', f'new {name}'):.2f}x**")]
    rows += [(f"one-pass floor: the five price columns read once, µs ({window.bars:,} bars)", us(floor)),
             ("(a) new kernel / floor", f"**{ratio('new random', 'floor'):.2f}x**"),
             ("(c) plain single-strategy Numba loop, µs", us(t_loop)),
             ("(c) new kernel speed relative to the plain loop", f"**{ratio('loop', 'new fixed'):.2f}x**"),
             ("(a) new kernel: bars per second per core", f"{window.bars / new_times['random'] / 1e6:.0f} M")]

    vbt_times = vectorbt_per_backtest(candles, sma20, rsi14, sma50, args.repeats)
    if vbt_times is None:
        rows.append(("vectorbt from_signals", "not installed (pip install -e '.[bench]')"))
    else:
        one, many = vbt_times
        rows += [("vectorbt from_signals, one column per call, µs", us(one)),
                 ("vectorbt from_signals, 100 columns per call, µs per backtest", us(many)),
                 ("new kernel speed-up vs vectorbt on (c) (one / 100 columns)",
                  f"{one / new_times['fixed']:.0f}x / {many / new_times['fixed']:.0f}x")]

    settings = MinerSettings(population=20, generations=5, risk="LOW", seed=1)
    mine(full, settings)  # warm-up: indicators cached per process are rebuilt per job on purpose
    t_job = median_time(lambda: mine(full, settings), max(3, args.repeats // 2))
    rows.append(("20 x 5 mining job on all candles, warm (incl. indicators), CPU s", f"{t_job:.2f}"))

    print_table(f"data: {full.describe()}; training window: bars [0, {train.end:,})", rows)


if __name__ == "__main__":
    main()
