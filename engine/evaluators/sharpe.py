"""Sharpe: the annualised Sharpe ratio, with strategies under ``min_trades`` ranked last."""

import numpy as np

PARAMS = {"min_trades": 10}


def score(m, min_trades):
    return np.where(m.trades >= min_trades, m.sharpe, -10.0)
