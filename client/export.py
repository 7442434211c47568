"""`miner export`: one mined strategy as compact JSON (the strategy document of docs/strategy.md) or as a standalone
Python file that backtests it with numpy alone.

Pure string templating from the result's genome dict: nothing here imports the engine, and the generated file
carries its own indicators and backtest, written from docs/backtest.md and engine/indicators.py operation for
operation, so that on the same candles, window and costs it reproduces the miner's trades (tests/client/test_export.py
holds it to that on the shipped BTC file).
"""

from __future__ import annotations

import json
import pprint
from typing import Any

from client import models as wire

SCHEMA = "strategy-miner/strategy/1"
FORMATS = ("json", "python")


class RankError(ValueError):
    """The result has no strategy at the rank asked for."""


def ranked(result: wire.JobResult, rank: int) -> dict[str, Any]:
    """The strategy at ``rank``: 1 is the result's best, K > 1 the K-th of its hall of fame (best first)."""
    if rank == 1:
        return {"strategy": result.strategy, "genome": result.genome, "fitness": result.fitness,
                "metrics": {"train": result.train.metrics,
                            "holdout": result.holdout.metrics if result.holdout else None}}
    fame = result.hall_of_fame
    if not fame:
        raise RankError(f"job {result.job_id}'s result holds only its best strategy (the service kept no hall of "
                        "fame): only --rank 1 exists")
    if rank > len(fame):
        raise RankError(f"job {result.job_id} kept {len(fame)} strateg{'y' if len(fame) == 1 else 'ies'}: "
                        f"--rank 1 to {len(fame)}")
    entry = fame[rank - 1]
    return {"strategy": entry.strategy, "genome": entry.genome, "fitness": entry.fitness,
            "metrics": {"train": entry.train_metrics, "holdout": entry.holdout_metrics}}


def strategy_document(job: wire.JobInfo, result: wire.JobResult, rank: int = 1) -> dict[str, Any]:
    """The strategy document (docs/strategy.md): the genome plus what it was mined on and with."""
    pick = ranked(result, rank)
    return {"schema": SCHEMA, "job_id": result.job_id, "rank": rank, "strategy": pick["strategy"],
            "genome": pick["genome"], "costs": (job.spec.costs or wire.Costs()).model_dump(mode="json"),
            "dataset": result.dataset, "data_fingerprint": result.data_fingerprint,
            "holdout_fraction": job.spec.holdout_fraction, "evaluator_version": result.evaluator_version,
            "fitness": pick["fitness"], "metrics": pick["metrics"]}


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def to_python(document: dict[str, Any]) -> str:
    """A standalone backtest of the document's strategy: ``python strategy.py candles.csv[.gz]``."""
    literal = pprint.pformat(document, width=110, sort_dicts=False)
    return _TEMPLATE.replace("__DESCRIPTION__", document["strategy"]).replace("__STRATEGY__", literal)


def render(document: dict[str, Any], fmt: str) -> str:
    return to_python(document) if fmt == "python" else to_json(document)


# The generated file. Indicators and the backtest follow engine/indicators.py and engine/kernel.py operation for
# operation (same sums in the same order, same formulas), so that every comparison a rule or a stop makes sees the
# same floating-point numbers as the miner's.
_TEMPLATE = r'''#!/usr/bin/env python3
"""__DESCRIPTION__

A mined strategy, exported by `miner export`, with its own backtest: Python 3.10+ and numpy, nothing else.

    python strategy.py candles.csv[.gz] [--part all|train|holdout] [--start TIME] [--end TIME] [--json]

The CSV needs the columns timestamp, open, high, low, close, volume (any order and case); timestamps are ISO-8601
(naive ones are UTC) or epoch seconds or milliseconds, oldest first. The backtest is the miner's (docs/backtest.md):
rules at each bar's close, fills at the next open with adverse slippage, fees on both sides, stop-loss, trailing stop
and take-profit inside the bar (the stop first when both are touched), an open position closed at the window's last
close. Indicators run over the whole file, so a window that starts later starts with warm indicators. On the same
candles, window and costs it gives the miner's trades and metrics.
"""

import argparse
import bisect
import csv
import gzip
import json
import math
import os
import sys
from datetime import datetime, timezone

import numpy as np

STRATEGY = __STRATEGY__

GENOME = STRATEGY["genome"]
COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
SECONDS_PER_YEAR = 365.25 * 24 * 3600
EPOCH_MS_THRESHOLD = 1e11  # epoch seconds stay below this until the year 5138
BOLLINGER_WIDTH = 2.0
PROFIT_FACTOR_CAP = 100.0
EQUAL_RETURNS_TOLERANCE = 1e-9  # trade_t_stat is 0 when the trade returns are equal up to rounding
NAN = float("nan")


# ---- candles ---------------------------------------------------------------------------------------------------

def parse_time(text):
    """Epoch seconds of an ISO-8601 time (naive = UTC) or of a number of epoch seconds or milliseconds."""
    try:
        seconds = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return math.floor(moment.timestamp())
    return math.floor(seconds / 1000.0 if abs(seconds) > EPOCH_MS_THRESHOLD else seconds)


def read_candles(path):
    """{column: list of floats} and the timestamps (epoch seconds) of a candle CSV, gzipped or not."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", newline="") as file:
        rows = csv.reader(file)
        header = [name.strip().lower() for name in next(rows, [])]
        missing = [name for name in COLUMNS if name not in header]
        if missing:
            sys.exit(f"{path}: missing column(s) {', '.join(missing)}")
        where = [header.index(name) for name in COLUMNS]
        values = {name: [] for name in COLUMNS}
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                bar = {name: row[k].strip() if name == "timestamp" else float(row[k])
                       for name, k in zip(COLUMNS, where)}
            except (ValueError, IndexError):
                sys.exit(f"{path}, line {line}: expected numbers in every price and volume column")
            problem = bar_problem(bar)
            if problem is not None:
                sys.exit(f"{path}, line {line}, column '{problem[0]}': {problem[1]}")
            for name in COLUMNS:
                values[name].append(bar[name])
    if not values["timestamp"]:
        sys.exit(f"{path}: no candles")
    numeric = all(_is_number(text) for text in values["timestamp"])
    times = [float(text) for text in values["timestamp"]] if numeric else values["timestamp"]
    if numeric and max(abs(t) for t in times) > EPOCH_MS_THRESHOLD:
        times = [t / 1000.0 for t in times]
    timestamps = [math.floor(t) for t in times] if numeric else [parse_time(text) for text in times]
    if any(later <= earlier for earlier, later in zip(timestamps, timestamps[1:])):
        sys.exit(f"{path}: timestamps must increase from row to row (sort the file by time, drop duplicates)")
    values["timestamp"] = timestamps
    return values


def bar_problem(bar):
    """(column, what is wrong) for a bar the miner's own loader refuses (engine/candles.py, in its words), else None:
    a backtest over such a bar means nothing."""
    for name in COLUMNS[1:]:
        if not math.isfinite(bar[name]):
            return name, "value is missing, NaN or infinite"
    for name in ("open", "high", "low", "close"):
        if bar[name] <= 0:
            return name, "price must be positive"
    if bar["volume"] < 0:
        return "volume", "volume must not be negative"
    if bar["high"] < bar["low"]:
        return "high", "high is below low"
    for name in ("open", "close"):
        if not bar["low"] <= bar[name] <= bar["high"]:
            return name, f"{name} is outside the bar's [low, high]"
    return None


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def bars_per_year(timestamps):
    """Bars per year as the data has them (bars over the years they span): annualises Sharpe and Sortino."""
    elapsed = int(timestamps[-1]) - int(timestamps[0]) if len(timestamps) > 1 else 0
    return (len(timestamps) - 1) * SECONDS_PER_YEAR / elapsed if elapsed > 0 else 1.0


# ---- indicators: NaN during warm-up ------------------------------------------------------------------------------

def sma(x, p):
    n = len(x)
    out = [NAN] * n
    if p > n:
        return out
    total = 0.0
    for i in range(p):
        total += x[i]
    out[p - 1] = total / p
    for i in range(p, n):
        total += x[i] - x[i - p]
        out[i] = total / p
    return out


def ema(x, p):
    """Seeded with the SMA of the first p values after any leading NaNs (MACD's signal line), then alpha = 2/(p+1)."""
    n = len(x)
    out = [NAN] * n
    first = 0
    while first < n and math.isnan(x[first]):
        first += 1
    if first + p > n:
        return out
    total = 0.0
    for i in range(first, first + p):
        total += x[i]
    prev = total / p
    out[first + p - 1] = prev
    alpha = 2.0 / (p + 1.0)
    for i in range(first + p, n):
        prev = alpha * x[i] + (1.0 - alpha) * prev
        out[i] = prev
    return out


def _rsi_value(gain, loss):
    if loss == 0.0:
        return 100.0 if gain > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + gain / loss)


def rsi(close, p):
    """Wilder's RSI."""
    n = len(close)
    out = [NAN] * n
    if p >= n:
        return out
    gain = loss = 0.0
    for i in range(1, p + 1):
        change = close[i] - close[i - 1]
        if change > 0.0:
            gain += change
        else:
            loss -= change
    gain /= p
    loss /= p
    out[p] = _rsi_value(gain, loss)
    for i in range(p + 1, n):
        change = close[i] - close[i - 1]
        gain = (gain * (p - 1) + max(change, 0.0)) / p
        loss = (loss * (p - 1) + max(-change, 0.0)) / p
        out[i] = _rsi_value(gain, loss)
    return out


def atr(high, low, close, p):
    """Wilder's average true range."""
    n = len(close)
    out = [NAN] * n
    if p >= n:
        return out

    def true_range(i):
        return max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))

    total = 0.0
    for i in range(1, p + 1):
        total += true_range(i)
    prev = total / p
    out[p] = prev
    for i in range(p + 1, n):
        prev = (prev * (p - 1) + true_range(i)) / p
        out[i] = prev
    return out


def bb_pctb(close, p):
    """Bollinger %B: bands SMA(p) +/- 2 population standard deviations (squared deviations summed oldest first)."""
    c = np.array(close)
    out = np.full(len(c), NAN)
    mean = np.array(sma(close, p))
    if p > len(c):
        return out
    at = np.arange(p - 1, len(c))
    var = np.zeros(at.size)
    for k in range(p):
        d = c[at - (p - 1) + k] - mean[at]
        var += d * d
    std = np.sqrt(var / p)
    lower = mean[at] - BOLLINGER_WIDTH * std
    defined = std > 0.0
    out[at[defined]] = (c[at] - lower)[defined] / ((2.0 * BOLLINGER_WIDTH) * std[defined])
    return out


def macd_hist(close, p):
    """MACD - signal with fast = p, slow = round(13p/6), signal = max(2, round(3p/4)) (12 -> 12/26/9)."""
    slow, signal = (13 * p + 3) // 6, max(2, (3 * p + 2) // 4)
    macd = np.array(ema(close, p)) - np.array(ema(close, slow))
    return macd - np.array(ema(macd.tolist(), signal))


def roc(close, p):
    """Rate of change over p bars, in percent."""
    c = np.array(close)
    out = np.full(len(c), NAN)
    out[p:] = 100.0 * (c[p:] / c[:-p] - 1.0)
    return out


def indicator(candles, name, p):
    close = candles["close"]
    if name == "sma":
        return sma(close, p)
    if name == "ema":
        return ema(close, p)
    if name == "rsi":
        return rsi(close, p)
    if name == "atr":
        return atr(candles["high"], candles["low"], close, p)
    if name == "bb_pctb":
        return bb_pctb(close, p)
    if name == "macd_hist":
        return macd_hist(close, p)
    if name == "roc":
        return roc(close, p)
    if name == "volume_sma":
        return sma(candles["volume"], p)
    raise ValueError(f"unknown indicator {name!r}")


# ---- signals ----------------------------------------------------------------------------------------------------

def operand(candles, spec):
    """A rule side as a float64 series over every bar, or a float for a constant."""
    if "constant" in spec:
        return float(spec["constant"])
    if "field" in spec:
        return np.array(candles[spec["field"]], dtype=np.float64)
    return np.array(indicator(candles, spec["indicator"], int(spec["period"])), dtype=np.float64)


def rule_holds(candles, rule):
    """At each bar's close: left op right; a cross also looks at the bar before. An undefined (NaN) side is false."""
    a, b = operand(candles, rule["left"]), operand(candles, rule["right"])
    op = rule["op"]
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    b_now, b_before = (b[1:], b[:-1]) if isinstance(b, np.ndarray) else (b, b)
    held = np.zeros(len(a), dtype=bool)  # never a cross at the first bar
    if op == "crosses_above":
        held[1:] = (a[1:] > b_now) & (a[:-1] <= b_before)
    else:
        held[1:] = (a[1:] < b_now) & (a[:-1] >= b_before)
    return held


def all_hold(candles, rules):
    held = np.ones(len(candles["close"]), dtype=bool)
    for rule in rules:
        held &= rule_holds(candles, rule)
    return held if rules else np.zeros(len(candles["close"]), dtype=bool)


# ---- the backtest -------------------------------------------------------------------------------------------------

def effective_stop(stop_level, extreme, trail, d):
    """(stop, is_trailing): the tighter of the fixed stop and the trailing level behind the best price so far."""
    if trail > 0.0:
        trailing = extreme * (1.0 - d * trail)
        if d * (trailing - stop_level) > 0.0:
            return trailing, True
    return stop_level, False


def backtest(candles, start, end, fee_bps, slippage_bps, initial_cash):
    """(trades, metrics) of the strategy over bars [start, end)."""
    fee, slip, cash0 = fee_bps / 10_000, slippage_bps / 10_000, initial_cash
    entry_sig, exit_sig = all_hold(candles, GENOME["entry"]), all_hold(candles, GENOME["exit"])
    d = 1.0 if GENOME["direction"] == "long" else -1.0
    size = GENOME["size"] * GENOME["leverage"]
    stop_loss, take_profit, trail = GENOME["stop_loss"] or 0.0, GENOME["take_profit"], GENOME["trailing_stop"]
    o, c, t = candles["open"], candles["close"], candles["timestamp"]
    adverse, favourable = (candles["low"], candles["high"]) if d > 0 else (candles["high"], candles["low"])
    last = end - 1  # decisions are taken at closes before the last; the last close only settles

    cash, trades = cash0, []
    in_position = enter = exit_at_open = False
    units = fill = entry_fee = stop_level = target_level = extreme = stop = 0.0
    trailing_active, entry_bar = False, 0
    wins = exposure = 0
    gross_profit = gross_loss = trade_mean = trade_m2 = 0.0
    peak, max_dd, prev_equity = cash0, 0.0, cash0
    sum_r = sum_r2 = sum_down2 = 0.0
    for i in range(start, end):
        if enter:  # fill at this bar's open; levels from the fill price
            fill = o[i] * (1.0 + d * slip)
            units = size * cash / (fill * (1.0 + fee))
            entry_fee = units * fill * fee
            stop_level = fill * (1.0 - d * stop_loss) if stop_loss > 0.0 else -d * math.inf  # inf: never
            target_level = fill * (1.0 + d * take_profit) if take_profit > 0.0 else d * math.inf
            extreme = fill
            stop, trailing_active = effective_stop(stop_level, extreme, trail, d)
            in_position, entry_bar = True, i
        exited = False
        if in_position:
            if exit_at_open:
                exit_price, reason, exited = o[i], "signal", True
            elif d * (adverse[i] - stop) > 0.0 and d * (favourable[i] - target_level) < 0.0 and i < last:
                extreme = max(extreme, favourable[i]) if d > 0 else min(extreme, favourable[i])
                if trail > 0.0:
                    stop, trailing_active = effective_stop(stop_level, extreme, trail, d)
            else:  # d * (price - level) <= 0: at or beyond the stop; checks in docs/backtest.md's order
                exited, reason = True, "trailing_stop" if trailing_active else "stop_loss"
                if d * (o[i] - stop) <= 0.0:
                    exit_price = o[i]
                elif d * (adverse[i] - stop) <= 0.0:
                    exit_price = stop
                elif d * (o[i] - target_level) >= 0.0:
                    exit_price, reason = o[i], "take_profit"
                elif d * (favourable[i] - target_level) >= 0.0:
                    exit_price, reason = target_level, "take_profit"
                else:
                    exit_price, reason = c[i], "end_of_data"
        if exited:
            price = exit_price * (1.0 - d * slip)
            pnl = d * units * (price - fill) - entry_fee - units * price * fee
            trade_return = pnl / cash  # cash is unchanged since the entry was sized from it
            cash += pnl
            if pnl > 0.0:
                wins += 1
                gross_profit += pnl
            else:
                gross_loss -= pnl
            trades.append({"entry_bar": entry_bar, "exit_bar": i, "entry_time": t[entry_bar], "exit_time": t[i],
                           "entry_price": fill, "exit_price": price, "units": units, "pnl": pnl,
                           "exit_reason": reason})
            delta = trade_return - trade_mean
            trade_mean += delta / len(trades)
            trade_m2 += delta * (trade_return - trade_mean)
            exposure += i - entry_bar + 1
            in_position = False
            value = cash
        elif in_position:
            value = cash + d * units * (c[i] - fill) - entry_fee
        else:
            value = cash
        if value > peak:
            peak = value
        elif value < peak * (1.0 - max_dd):
            max_dd = 1.0 - value / peak
        r = value / prev_equity - 1.0 if prev_equity > 0.0 else 0.0
        sum_r += r
        sum_r2 += r * r
        down = min(r, 0.0)
        sum_down2 += down * down
        prev_equity = value
        if exited and cash <= 0.0:  # ruined: no cash left to trade with
            cash = 0.0
            break
        enter = not in_position and i < last and bool(entry_sig[i])
        exit_at_open = in_position and bool(exit_sig[i]) and i < last

    n, n_bars = len(trades), max(end - start, 1)
    mean = sum_r / n_bars
    std = math.sqrt(max(sum_r2 / n_bars - mean * mean, 0.0))
    downside = math.sqrt(sum_down2 / n_bars)
    annual = math.sqrt(bars_per_year(t))
    trade_std = math.sqrt(trade_m2 / (n - 1)) if n > 1 else 0.0
    squares = trade_m2 + n * trade_mean * trade_mean
    if gross_loss > 0.0:
        profit_factor = min(gross_profit / gross_loss, PROFIT_FACTOR_CAP)
    else:
        profit_factor = PROFIT_FACTOR_CAP if gross_profit > 0.0 else 0.0
    metrics = {
        "net_pnl": cash - cash0,
        "return_pct": 100.0 * (cash - cash0) / cash0,
        "trades": float(n),
        "win_rate": wins / n if n > 0 else 0.0,
        "max_drawdown": max_dd,
        "sharpe": mean / std * annual if std > 0.0 else 0.0,
        "sortino": mean / downside * annual if downside > 0.0 else 0.0,
        "profit_factor": profit_factor,
        "exposure": exposure / n_bars,
        "avg_trade_return": trade_mean,
        "trade_t_stat": (trade_mean / trade_std * math.sqrt(n)
                         if trade_std > EQUAL_RETURNS_TOLERANCE * abs(trade_mean) else 0.0),
        "trade_z": n * trade_mean / math.sqrt(squares) if squares > 0.0 else 0.0,
        "bar_z": sum_r / math.sqrt(sum_r2) if sum_r2 > 0.0 else 0.0,
    }
    return trades, metrics


# ---- command line -------------------------------------------------------------------------------------------------

def window(timestamps, part, start_time, end_time):
    """Bars [start, end): the part of the file (the job held out its last holdout_fraction of bars), narrowed to
    [--start, --end) when given."""
    n = len(timestamps)
    held = round(n * STRATEGY["holdout_fraction"])
    start, end = {"all": (0, n), "train": (0, n - held), "holdout": (n - held, n)}[part]
    if start_time is not None:
        start = max(start, bisect.bisect_left(timestamps, parse_time(start_time)))
    if end_time is not None:
        end = min(end, bisect.bisect_left(timestamps, parse_time(end_time)))
    return start, end


def when(epoch_seconds):
    return datetime.fromtimestamp(epoch_seconds, timezone.utc).strftime("%Y-%m-%d %H:%M")


def main(argv=None):
    costs = STRATEGY["costs"]
    parser = argparse.ArgumentParser(description=STRATEGY["strategy"])
    parser.add_argument("candles", help="CSV file of candles (.csv or .csv.gz)")
    parser.add_argument("--part", choices=["all", "train", "holdout"], default="all",
                        help="all bars (default), or the job's training or held-out part "
                             f"(the last {100 * STRATEGY['holdout_fraction']:g} %% of them)")
    parser.add_argument("--start", metavar="TIME", help="first bar at or after TIME (ISO-8601 or epoch seconds)")
    parser.add_argument("--end", metavar="TIME", help="bars before TIME")
    parser.add_argument("--fee-bps", type=float, default=costs["fee_bps"],
                        help="fee per side, basis points (default: the job's, %(default)g)")
    parser.add_argument("--slippage-bps", type=float, default=costs["slippage_bps"],
                        help="adverse slippage per fill, basis points (default: the job's, %(default)g)")
    parser.add_argument("--initial-cash", type=float, default=costs["initial_cash"],
                        help="starting cash (default: the job's, %(default)g)")
    parser.add_argument("--json", action="store_true", help="print the window, trades and metrics as JSON")
    args = parser.parse_args(argv)
    try:
        candles = read_candles(args.candles)
        start, end = window(candles["timestamp"], args.part, args.start, args.end)
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    if end <= start:
        sys.exit("error: the window holds no bars")
    trades, metrics = backtest(candles, start, end, args.fee_bps, args.slippage_bps, args.initial_cash)
    t = candles["timestamp"]
    if args.json:
        print(json.dumps({"strategy": STRATEGY["strategy"], "start_bar": start, "end_bar": end,
                          "trades": trades, "metrics": metrics}, indent=2))
        return
    print(STRATEGY["strategy"])
    print(f"{args.candles}: bars {start} to {end - 1} of {len(t)} ({when(t[start])} to {when(t[end - 1])} UTC), "
          f"fee {args.fee_bps:g} bps, slippage {args.slippage_bps:g} bps, cash {args.initial_cash:,.2f}")
    print(f"{'entry (UTC)':<17}  {'exit (UTC)':<17}  {'entry price':>13}  {'exit price':>13}  {'pnl':>12}  reason")
    for trade in trades:
        print(f"{when(trade['entry_time']):<17}  {when(trade['exit_time']):<17}  {trade['entry_price']:>13,.2f}  "
              f"{trade['exit_price']:>13,.2f}  {trade['pnl']:>+12,.2f}  {trade['exit_reason']}")
    for name, value in metrics.items():
        print(f"{name:<17} {value:,.6g}")


if __name__ == "__main__":
    try:
        main()
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (| head): no traceback, the rest goes nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
'''
