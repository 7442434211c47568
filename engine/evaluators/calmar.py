"""Calmar: return over maximum drawdown (both as fractions).

The drawdown is floored at ``drawdown_floor`` so a lucky strategy with a tiny drawdown does not score near
infinity. The engine's min_trades rule and folds keep a few lucky trades from winning (docs/research.md).
"""

import numpy as np

PARAMS = {"drawdown_floor": 0.02}


def score(m, drawdown_floor):
    return (m.return_pct / 100.0) / np.maximum(m.max_drawdown, drawdown_floor)
