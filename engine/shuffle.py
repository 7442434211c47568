"""Shuffled copies of candles for the permutation test: the same moves in a random order.

Each bar becomes a *move* relative to the previous close: its close-to-close log return together with its open,
high and low as log ratios to the previous close, and its volume. The moves are shuffled together, across the
whole window (a move that spans a time gap, an exchange's outage or a market's night or weekend, stays where it
is, as it is of another kind), then prices are rebuilt from the first close. The copy keeps the window's
distribution of moves and bar shapes exactly, while any link between what indicators see and what comes next is
destroyed (T. Masters, "Permutation and Randomization Tests for Trading System Development", 2020), along with
volatility clustering: the null is "the moves are exchangeable".

Not within each gap-free stretch alone, as until 2026-12-04: on data with many gaps (a stock market's sessions, a
daily series' weekends) the stretches are a few bars long, and a copy shuffled within them keeps every structure
longer than a stretch, so a real trend survived in every copy and could not be told from them.
"""

from __future__ import annotations

import numpy as np

from engine.candles import Candles, candles_from_arrays


def segment_starts(timestamp: np.ndarray, bar_seconds: int) -> np.ndarray:
    """Indices of bars that begin a gap-free segment (0 and every bar after a gap)."""
    return np.concatenate([[0], np.flatnonzero(np.diff(timestamp) > bar_seconds) + 1])


def shuffled_copy(candles: Candles, end: int, rng: np.random.Generator, *, source: str | None = None) -> Candles:
    """Bars [0, end) of ``candles`` with their moves permuted, those across a time gap left in place."""
    ts = candles.timestamp[:end]
    o, h, lo, c, v = (np.asarray(x[:end], dtype=np.float64) for x in
                      (candles.open, candles.high, candles.low, candles.close, candles.volume))
    prev = np.log(c[:-1])
    moves = np.stack([np.log(c[1:]) - prev, np.log(o[1:]) - prev, np.log(h[1:]) - prev,
                      np.log(lo[1:]) - prev, v[1:]], axis=1)  # move i-1 belongs to bar i
    order = np.arange(end - 1)
    starts = segment_starts(ts, candles.bar_seconds)
    free = np.setdiff1d(order, starts[starts > 0] - 1)  # the moves of bars that follow a gap stay put
    order[free] = free[rng.permutation(free.size)]
    moves = moves[order]
    log_close = np.log(c[0]) + np.concatenate([[0.0], np.cumsum(moves[:, 0])])
    base = log_close[:-1]
    new = {name: np.concatenate([[first], np.exp(base + moves[:, k])])
           for k, (name, first) in enumerate((("close", c[0]), ("open", o[0]), ("high", h[0]), ("low", lo[0])))}
    high = np.maximum.reduce([new["high"], new["open"], new["close"]])  # guard against last-bit rounding
    low = np.minimum.reduce([new["low"], new["open"], new["close"]])
    volume = np.concatenate([[v[0]], moves[:, 4]])
    return candles_from_arrays(ts, new["open"], high, low, new["close"], volume,
                               source=source or f"{candles.source} shuffled")
