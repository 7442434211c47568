"""Balanced: the z-statistic of the strategy's bar-by-bar returns, minus a penalty for deep drawdowns.

fitness = bar_z - drawdown_penalty * max(0, max_drawdown - drawdown_limit)

``bar_z`` = sum of the per-bar equity returns / sqrt(sum of their squares), over the fold (a flat bar returns 0).
Why bars, not trades: the position held during a bar is decided before the bar, so with no edge each bar's
return has mean 0 whatever the entry, stop, target or trailing rule, and ``bar_z`` is close to a standard
normal (a self-normalised martingale; Wald's identity: a stopping rule cannot change a random walk's
variance per bar held). Per-trade statistics lack this: a wide stop and a tight target win nearly every trade
on a random walk until the rare large loss, so in a fold without that loss every trade returns the same small
gain and ``trade_z`` = sqrt(trades), the search's favourite noise. On a real edge the two measure the same
thing. A 45 % drawdown under the default limit of 25 % costs 2 points. The engine applies min_trades and the
folds around every evaluator (docs/research.md).
"""

import numpy as np

PARAMS = {"drawdown_limit": 0.25, "drawdown_penalty": 10.0}


def score(m, drawdown_limit, drawdown_penalty):
    return m.bar_z - drawdown_penalty * np.maximum(0.0, m.max_drawdown - drawdown_limit)
