"""Shuffled copies of candles for the permutation test: the same moves in a random order.

Each bar becomes a *move* relative to the previous close: its close-to-close log return together with its open,
high and low as log ratios to the previous close, and its volume. Moves are shuffled within each gap-free
segment (a move that spans a time gap stays where it is), then prices are rebuilt from the first close. The copy
keeps every segment's return distribution, volatility and bar shapes exactly, while any link between what
indicators see and what comes next is destroyed (T. Masters, "Permutation and Randomization Tests for Trading
System Development", 2020).
"""

from __future__ import annotations

import itertools

import numpy as np

from engine.candles import Candles, candles_from_arrays


def segment_starts(timestamp: np.ndarray, bar_seconds: int) -> np.ndarray:
    """Indices of bars that begin a gap-free segment (0 and every bar after a gap)."""
    return np.concatenate([[0], np.flatnonzero(np.diff(timestamp) > bar_seconds) + 1])


def shuffled_copy(candles: Candles, end: int, rng: np.random.Generator, *, source: str | None = None) -> Candles:
    """Bars [0, end) of ``candles`` with their moves permuted within gap-free segments."""
    ts = candles.timestamp[:end]
    o, h, lo, c, v = (np.asarray(x[:end], dtype=np.float64) for x in
                      (candles.open, candles.high, candles.low, candles.close, candles.volume))
    prev = np.log(c[:-1])
    moves = np.stack([np.log(c[1:]) - prev, np.log(o[1:]) - prev, np.log(h[1:]) - prev,
                      np.log(lo[1:]) - prev, v[1:]], axis=1)  # move i-1 belongs to bar i
    order = np.arange(end - 1)
    bounds = np.concatenate([segment_starts(ts, candles.bar_seconds), [end]])
    for first, stop in itertools.pairwise(bounds):
        # bars first+1 .. stop-1 trade moves; bar `first` keeps its own (after a gap it spans the gap)
        segment = order[first:stop - 1]
        segment[:] = segment[rng.permutation(segment.size)]
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
