"""Calmar: return over maximum drawdown (both in %), with strategies under ``min_trades`` ranked last.

The drawdown is floored at ``drawdown_floor`` so a lucky strategy with a tiny drawdown does not score
near infinity.
"""

import numpy as np

PARAMS = {"min_trades": 10, "drawdown_floor": 0.02}


def score(m, min_trades, drawdown_floor):
    calmar = (m.return_pct / 100.0) / np.maximum(m.max_drawdown, drawdown_floor)
    return np.where(m.trades >= min_trades, calmar, -10.0)
