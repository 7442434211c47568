"""Equity and drawdown of a result as a PNG (needs the optional `plot` extra: matplotlib)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from client import models as wire


def plot_result(result: wire.JobResult, path: str | Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install '.[plot]' (in the strategy-miner checkout)") from None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=(3, 1))
    for name, backtest, colour in (("train", result.train, "tab:blue"), ("holdout", result.holdout, "tab:orange")):
        if backtest is None:
            continue
        times = [datetime.fromtimestamp(t, UTC) for t in backtest.equity.time]
        equity = backtest.equity.equity
        peak, drawdown = float("-inf"), []
        for value in equity:
            peak = max(peak, value)
            drawdown.append(100 * (value / peak - 1) if peak > 0 else 0.0)
        top.plot(times, equity, color=colour, label=f"{name}: {backtest.metrics['return_pct']:+.2f} %")
        bottom.fill_between(times, drawdown, 0, color=colour, alpha=0.4)
    top.set_ylabel("equity (USD)")
    top.set_title(result.strategy, fontsize=9, wrap=True)
    top.legend(loc="upper left")
    bottom.set_ylabel("drawdown (%)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
