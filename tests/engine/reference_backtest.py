"""A plain-Python backtest written straight from docs/backtest.md, to check the Numba kernel against.

Deliberately naive: one bar at a time, long and short spelled out separately, no shared code with
``engine.kernel`` beyond the feature series both read.
"""

from __future__ import annotations

import math
import statistics

from engine.genome import ConstantOperand, Genome, IndicatorOperand, PriceOperand


def _series(operand, columns: dict):
    if isinstance(operand, PriceOperand):
        return columns[operand.field]
    if isinstance(operand, IndicatorOperand):
        return columns[(operand.indicator, operand.period)]
    return None


def _value(operand, columns, i):
    if isinstance(operand, ConstantOperand):
        return operand.constant
    return float(_series(operand, columns)[i])


def rule_holds(rule, columns, i) -> bool:
    a, b = _value(rule.left, columns, i), _value(rule.right, columns, i)
    if math.isnan(a) or math.isnan(b):
        return False
    if rule.op == ">":
        return a > b
    if rule.op == ">=":
        return a >= b
    if rule.op == "<":
        return a < b
    if rule.op == "<=":
        return a <= b
    if i == 0:
        return False
    a0, b0 = _value(rule.left, columns, i - 1), _value(rule.right, columns, i - 1)
    if math.isnan(a0) or math.isnan(b0):
        return False
    if rule.op == "crosses_above":
        return a > b and a0 <= b0
    return a < b and a0 >= b0


def reference_backtest(genome: Genome, columns: dict, start: int, end: int, fee: float, slip: float,
                       cash0: float, periods_per_year: float):
    """Returns (metrics dict, trades list of dicts, equity list over [start, end))."""
    o, h, lo, c = columns["open"], columns["high"], columns["low"], columns["close"]
    long = genome.direction == "long"
    cash = cash0
    position = None  # dict(units, fill, fee, stop, target, best, entry_bar, cash); stop None = no stop
    pending = None  # "enter" or "exit"
    ruined = False
    trades, equity = [], []
    exposure = 0

    def close_position(price, bar, reason):
        nonlocal cash, position, ruined
        if long:
            executed = price * (1 - slip)
            pnl = position["units"] * (executed - position["fill"])
        else:
            executed = price * (1 + slip)
            pnl = position["units"] * (position["fill"] - executed)
        pnl -= position["fee"] + position["units"] * executed * fee
        cash += pnl
        trades.append({"entry_bar": position["entry_bar"], "exit_bar": bar, "entry_price": position["fill"],
                       "exit_price": executed, "units": position["units"], "pnl": pnl, "reason": reason,
                       "return": pnl / position["cash"]})
        position = None
        if cash <= 0:
            cash, ruined = 0.0, True

    for i in range(start, end):
        exited_at_open = False
        if pending == "enter":
            fill = o[i] * (1 + slip) if long else o[i] * (1 - slip)
            units = genome.size * genome.leverage * cash / (fill * (1 + fee))
            if genome.stop_loss == 0:
                stop = None
            elif long:
                stop = fill * (1 - genome.stop_loss)
            else:
                stop = fill * (1 + genome.stop_loss)
            position = {"units": units, "fill": fill, "fee": units * fill * fee, "entry_bar": i, "best": fill,
                        "stop": stop, "cash": cash,
                        "target": fill * (1 + genome.take_profit) if long else fill * (1 - genome.take_profit)}
        elif pending == "exit":
            exposure += 1
            close_position(o[i], i, "signal")
            exited_at_open = True
        pending = None

        if position is not None and not exited_at_open:
            exposure += 1
            stop, reason = position["stop"], "stop_loss"
            if genome.trailing_stop > 0:
                if long:
                    trail = position["best"] * (1 - genome.trailing_stop)
                    if stop is None or trail > stop:
                        stop, reason = trail, "trailing_stop"
                else:
                    trail = position["best"] * (1 + genome.trailing_stop)
                    if stop is None or trail < stop:
                        stop, reason = trail, "trailing_stop"
            target = position["target"] if genome.take_profit > 0 else None
            if long:
                if stop is not None and o[i] <= stop:
                    close_position(o[i], i, reason)
                elif stop is not None and lo[i] <= stop:
                    close_position(stop, i, reason)
                elif target is not None and o[i] >= target:
                    close_position(o[i], i, "take_profit")
                elif target is not None and h[i] >= target:
                    close_position(target, i, "take_profit")
                else:
                    position["best"] = max(position["best"], h[i])
            else:
                if stop is not None and o[i] >= stop:
                    close_position(o[i], i, reason)
                elif stop is not None and h[i] >= stop:
                    close_position(stop, i, reason)
                elif target is not None and o[i] <= target:
                    close_position(o[i], i, "take_profit")
                elif target is not None and lo[i] <= target:
                    close_position(target, i, "take_profit")
                else:
                    position["best"] = min(position["best"], lo[i])
            if position is not None and i == end - 1:
                close_position(c[i], i, "end_of_data")

        if position is None:
            equity.append(cash)
        elif long:
            equity.append(cash + position["units"] * (c[i] - position["fill"]) - position["fee"])
        else:
            equity.append(cash + position["units"] * (position["fill"] - c[i]) - position["fee"])

        if i < end - 1 and not ruined:
            if position is None and all(rule_holds(r, columns, i) for r in genome.entry):
                pending = "enter"
            elif position is not None and genome.exit and all(rule_holds(r, columns, i) for r in genome.exit):
                pending = "exit"

    returns, previous = [], cash0
    for value in equity:
        returns.append(value / previous - 1 if previous > 0 else 0.0)
        previous = value
    n = len(returns)
    mean = sum(returns) / n
    std = math.sqrt(max(sum(r * r for r in returns) / n - mean * mean, 0.0))
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / n)
    peak, max_dd = cash0, 0.0
    for value in equity:
        peak = max(peak, value)
        max_dd = max(max_dd, (peak - value) / peak)
    wins = [t["pnl"] for t in trades if t["pnl"] > 0]
    losses = [-t["pnl"] for t in trades if t["pnl"] <= 0]
    gross_profit, gross_loss = sum(wins), sum(losses)
    profit_factor = min(gross_profit / gross_loss, 100.0) if gross_loss > 0 else 100.0 if gross_profit > 0 else 0.0
    trade_returns = [t["return"] for t in trades]
    avg_trade_return = statistics.fmean(trade_returns) if trade_returns else 0.0
    trade_std = statistics.stdev(trade_returns) if len(trade_returns) > 1 else 0.0
    if trade_std > 1e-9 * abs(avg_trade_return):
        trade_t_stat = avg_trade_return / (trade_std / math.sqrt(len(trade_returns)))
    else:
        trade_t_stat = 0.0
    metrics = {
        "net_pnl": cash - cash0,
        "return_pct": 100 * (cash - cash0) / cash0,
        "trades": float(len(trades)),
        "win_rate": len(wins) / len(trades) if trades else 0.0,
        "max_drawdown": max_dd,
        "sharpe": mean / std * math.sqrt(periods_per_year) if std > 0 else 0.0,
        "sortino": mean / downside * math.sqrt(periods_per_year) if downside > 0 else 0.0,
        "profit_factor": profit_factor,
        "exposure": exposure / n,
        "avg_trade_return": avg_trade_return,
        "trade_t_stat": trade_t_stat,
        "trade_z": sum(trade_returns) / math.sqrt(sum(r * r for r in trade_returns)) if any(trade_returns) else 0.0,
        "bar_z": sum(returns) / math.sqrt(sum(r * r for r in returns)) if any(returns) else 0.0,
    }
    return metrics, trades, equity
