"""Balanced: the score statistic of per-trade returns, minus a penalty for deep drawdowns.

fitness = trade_z - drawdown_penalty * max(0, max_drawdown - drawdown_limit)

``trade_z`` = sum of trade returns / sqrt(sum of their squares): the t-statistic of "the mean trade return is 0"
with the spread measured around 0 (Rao's score test). It grows with a steady edge and with the number of
trades, stays near 0 for a strategy whose few trades happened to win, and can never exceed sqrt(trades), so a
run of near-identical wins (no stop, a take-profit, the large loss not yet come) cannot pass for a strong edge.
A raw annualised Sharpe has none of these properties. A 45 % drawdown under the default limit of 25 % costs 2
points. The engine applies min_trades and the folds around every evaluator (docs/research.md).
"""

import numpy as np

PARAMS = {"drawdown_limit": 0.25, "drawdown_penalty": 10.0}


def score(m, drawdown_limit, drawdown_penalty):
    return m.trade_z - drawdown_penalty * np.maximum(0.0, m.max_drawdown - drawdown_limit)
