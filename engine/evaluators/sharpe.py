"""Sharpe: the per-trade Sharpe ratio, lowered by its own uncertainty (a one-sided confidence bound).

fitness = SR - z * sqrt((1 + SR^2 / 2) / trades), SR = mean trade return / its standard deviation

The standard error is Lo's (2002, "The Statistics of Sharpe Ratios") for independent returns; ``z`` = 1.645 is
the 95 % one-sided bound, so a high Sharpe from a handful of trades scores below a modest one from hundreds.
"""

import numpy as np

PARAMS = {"z": 1.645}


def score(m, z):
    trades = np.maximum(m.trades, 1.0)
    sharpe = m.trade_t_stat / np.sqrt(trades)
    return np.where(m.trades >= 2, sharpe - z * np.sqrt((1.0 + sharpe**2 / 2.0) / trades), -1.0)
