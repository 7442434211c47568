"""Balanced: annualised Sharpe, minus penalties for too few trades and for deep drawdowns.

fitness = sharpe - too_few_trades_penalty * max(0, 1 - trades / min_trades)
                 - drawdown_penalty * max(0, max_drawdown - drawdown_limit)

A strategy that never trades scores -too_few_trades_penalty; one with a 45 % drawdown under the default
limit of 25 % loses 2 points of Sharpe.
"""

import numpy as np

PARAMS = {"min_trades": 30, "too_few_trades_penalty": 2.0, "drawdown_limit": 0.25, "drawdown_penalty": 10.0}


def score(m, min_trades, too_few_trades_penalty, drawdown_limit, drawdown_penalty):
    return (m.sharpe
            - too_few_trades_penalty * np.maximum(0.0, 1.0 - m.trades / min_trades)
            - drawdown_penalty * np.maximum(0.0, m.max_drawdown - drawdown_limit))
