"""Feature store: OHLCV rows plus every (indicator, period) a genome asked for, computed once.

The kernels read operands from one C-contiguous float64 matrix ``features[row, bar]`` through an
int64 table ``lookup[kind, period] -> row`` (-1 when not computed). Price fields live in rows 0..4
with period 0. New indicators are appended; capacity doubles so appending stays cheap and a batch
never copies the matrix.
"""

from __future__ import annotations

import threading

import numpy as np

from engine import indicators as ind
from engine import layout as L
from engine.candles import Candles


def compute_indicator(candles: Candles, kind: int, period: int) -> np.ndarray:
    """One indicator series over all candles (see ``engine.indicators`` for definitions)."""
    if not L.MIN_PERIOD <= period <= L.MAX_PERIOD:
        raise ValueError(f"indicator period {period} is outside {L.MIN_PERIOD}..{L.MAX_PERIOD}")
    close = candles.close
    if kind == L.SMA:
        return ind.sma_nb(close, period)
    if kind == L.EMA:
        return ind.ema_nb(close, period)
    if kind == L.RSI:
        return ind.rsi_nb(close, period)
    if kind == L.ATR:
        return ind.atr_nb(candles.high, candles.low, close, period)
    if kind == L.BB_PCTB:
        return ind.bb_pctb_nb(close, period)
    if kind == L.MACD_HIST:
        return ind.macd_hist_nb(close, *ind.macd_periods(period))
    if kind == L.ROC:
        return ind.roc_nb(close, period)
    if kind == L.VOLUME_SMA:
        return ind.sma_nb(candles.volume, period)
    raise ValueError(f"operand kind {kind} is not an indicator")


def operand_pairs(genomes: np.ndarray) -> np.ndarray:
    """(kind, period) int64 rows of every indicator operand in the rule slots of encoded genomes, repeats kept."""
    genomes = np.atleast_2d(genomes)
    slots = genomes[:, L.ENTRY_OFFSET:].reshape(-1, L.RULE_WIDTH)
    pairs = np.concatenate([slots[:, [L.R_LEFT_KIND, L.R_LEFT_PERIOD]],
                            slots[:, [L.R_RIGHT_KIND, L.R_RIGHT_PERIOD]]]).astype(np.int64)
    return pairs[(pairs[:, 0] >= L.SMA) & (pairs[:, 0] <= L.VOLUME_SMA)]


class FeatureStore:
    """Per-dataset cache of operand series; thread-safe so threaded evaluators can share one.

    It can start from a shared, read-only ``(matrix, lookup)`` pair (``tables()`` of another store, e.g.
    zero-copy out of Ray's object store): rows are then only copied if a genome asks for a series the
    shared tables lack (copy on first append).
    """

    def __init__(self, candles: Candles, capacity: int = 64, shared: tuple[np.ndarray, np.ndarray] | None = None):
        self.candles = candles
        self._lock = threading.Lock()
        if shared is not None:
            self._matrix, lookup = shared
            self._lookup = lookup.copy()
            self._count = self._matrix.shape[0]
            self._owned = False
            return
        self._matrix = np.empty((max(capacity, 8), len(candles)), dtype=np.float64)
        self._lookup = np.full((L.N_KINDS, L.MAX_PERIOD + 1), -1, dtype=np.int64)
        self._count = 0
        self._owned = True
        for kind, column in ((L.OPEN, candles.open), (L.HIGH, candles.high), (L.LOW, candles.low),
                             (L.CLOSE, candles.close), (L.VOLUME, candles.volume)):
            self._append(kind, 0, column)

    @property
    def matrix(self) -> np.ndarray:
        return self._matrix[: self._count]

    @property
    def lookup(self) -> np.ndarray:
        return self._lookup

    @property
    def owns_rows(self) -> bool:
        """False while the rows are still the shared tables this store started from."""
        return self._owned

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """A compact (matrix, lookup) copy to share with other processes."""
        with self._lock:
            return self.matrix.copy(), self._lookup.copy()

    def ensure(self, pairs) -> None:
        with self._lock:
            for kind, period in sorted(pairs):
                if self._lookup[kind, period] < 0:
                    self._append(kind, period, compute_indicator(self.candles, kind, period))

    def ensure_menu(self, periods) -> None:
        """Every indicator at every period of a menu: what the GA can draw."""
        self.ensure({(kind, p) for kind in L.INDICATORS.values() for p in periods})

    def prepare(self, genomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Compute what ``genomes`` need; return the (matrix, lookup) pair the kernels take.

        Every batch passes here, mostly needing nothing new: the operands already in the table are found with one
        fancy index, not a set of all of them (``ensure`` checks again under the lock)."""
        pairs = operand_pairs(genomes)
        missing = pairs[self._lookup[pairs[:, 0], pairs[:, 1]] < 0]
        if missing.size:
            self.ensure({(k, p) for k, p in missing.tolist()})
        return self.matrix, self.lookup

    def _append(self, kind: int, period: int, series: np.ndarray) -> None:
        if self._count == self._matrix.shape[0] or not self._owned:
            grown = np.empty((max(2 * self._count, 8), self._matrix.shape[1]), dtype=np.float64)
            grown[: self._count] = self._matrix[: self._count]
            self._matrix, self._owned = grown, True
        self._matrix[self._count] = series
        self._lookup[kind, period] = self._count
        self._count += 1
