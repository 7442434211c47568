"""Balanced: the t-statistic of per-trade returns, minus a penalty for deep drawdowns.

fitness = trade_t_stat - drawdown_penalty * max(0, max_drawdown - drawdown_limit)

The t-statistic (mean trade return / its standard error) grows with a steady edge and with the number of trades,
and stays near zero for a strategy whose few trades happened to win, which a raw annualised Sharpe does not.
One with a 45 % drawdown under the default limit of 25 % loses 2 points. The engine applies min_trades and the
folds around every evaluator (docs/research.md).
"""

import numpy as np

PARAMS = {"drawdown_limit": 0.25, "drawdown_penalty": 10.0}


def score(m, drawdown_limit, drawdown_penalty):
    return m.trade_t_stat - drawdown_penalty * np.maximum(0.0, m.max_drawdown - drawdown_limit)
