"""PnL with a drawdown penalty: net return in %, minus ``penalty`` points per % of drawdown beyond ``limit``."""

import numpy as np

PARAMS = {"limit": 0.15, "penalty": 2.0}


def score(m, limit, penalty):
    return m.return_pct - penalty * 100.0 * np.maximum(0.0, m.max_drawdown - limit)
