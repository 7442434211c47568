"""Validated, immutable OHLCV candles loaded from CSV or Parquet.

A bar is a row: time gaps are reported, never filled. Every validation error names the file, the
row (the line number for CSV, counting the header as line 1) and the column, and says how many rows
share the problem, so a trader can fix a file in one pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
SECONDS_PER_YEAR = 365.25 * 24 * 3600
LATEST_TIMESTAMP = 4_102_444_800  # 2100-01-01 UTC: later ones are a unit mistake, and break date arithmetic
_EPOCH_MS_THRESHOLD = 1e11  # epoch seconds stay below this until the year 5138


class CandleDataError(ValueError):
    """A candle file or array that cannot be used, with where and why."""

    def __init__(self, message: str, *, source: str, row: int | None = None, column: str | None = None):
        self.source, self.row, self.column = source, row, column
        where = [source]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {message}")


@dataclass(frozen=True)
class GapReport:
    """Bars further apart than the usual spacing. Gaps are not errors; they are reported."""

    count: int
    largest_seconds: int


@dataclass(frozen=True, eq=False)
class Candles:
    """OHLCV columns as read-only float64 arrays plus int64 UTC epoch-second timestamps."""

    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: str = "arrays"

    def __len__(self) -> int:
        return int(self.close.shape[0])

    @cached_property
    def bar_seconds(self) -> int:
        """Typical bar spacing: the median difference of consecutive timestamps (cached: a median over every bar
        takes milliseconds, and every backtest call needs it to annualise)."""
        if len(self) < 2:
            return 0
        return int(np.median(np.diff(self.timestamp)))

    @cached_property
    def periods_per_year(self) -> float:
        """Bars per year as the data has them (bars over the years they span); annualises Sharpe and Sortino.

        Not a year over the typical spacing: that counts bars a market's closed hours and weekends never have (a
        5-minute stock series has about 20,000 bars a year, not 105,000), which inflated Sharpe by the square root
        of the ratio. For round-the-clock data without gaps the two are the same."""
        elapsed = int(self.timestamp[-1] - self.timestamp[0]) if len(self) > 1 else 0
        return (len(self) - 1) * SECONDS_PER_YEAR / elapsed if elapsed > 0 else 1.0

    @property
    def gaps(self) -> GapReport:
        if len(self) < 2:
            return GapReport(0, 0)
        steps = np.diff(self.timestamp)
        bigger = steps[steps > self.bar_seconds]
        return GapReport(int(bigger.size), int(bigger.max()) if bigger.size else 0)

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of timestamps and OHLCV values: identifies a dataset in results."""
        digest = hashlib.sha256()
        for column in (self.timestamp, self.open, self.high, self.low, self.close, self.volume):
            digest.update(np.ascontiguousarray(column).tobytes())
        return "sha256:" + digest.hexdigest()[:32]

    def slice(self, start: int, end: int) -> Candles:
        """Rows [start, end) as new candles (views: no copy)."""
        return Candles(
            *(column[start:end] for column in
              (self.timestamp, self.open, self.high, self.low, self.close, self.volume)),
            source=f"{self.source}[{start}:{end}]",
        )

    def describe(self) -> str:
        first = pd.Timestamp(int(self.timestamp[0]), unit="s", tz="UTC") if len(self) else None
        last = pd.Timestamp(int(self.timestamp[-1]), unit="s", tz="UTC") if len(self) else None
        gaps = self.gaps
        return (f"{self.source}: {len(self)} candles, {first} to {last}, bar {self.bar_seconds}s, "
                f"{gaps.count} gap(s), largest {gaps.largest_seconds}s")


def candles_from_arrays(timestamp, open_, high, low, close, volume, *, source: str = "arrays",
                        row_offset: int = 0) -> Candles:
    """Validate columns and freeze them into ``Candles``.

    ``row_offset`` converts an array index into the row number shown in errors (2 for a CSV with a
    header line, 1 for a Parquet file's first data row).
    """
    columns = {
        "timestamp": np.asarray(timestamp, dtype=np.int64),
        **{name: np.asarray(values, dtype=np.float64) for name, values in
           zip(("open", "high", "low", "close", "volume"), (open_, high, low, close, volume), strict=True)},
    }
    n = columns["close"].shape[0]
    if n == 0:
        raise CandleDataError("no candles (the file has a header but no data rows)", source=source)
    if any(values.shape != (n,) for values in columns.values()):
        raise CandleDataError("all columns must be one-dimensional and of equal length", source=source)

    def fail_where(mask: np.ndarray, column: str, message: str) -> None:
        bad = np.flatnonzero(mask)
        if bad.size:
            more = f" ({bad.size} rows have this problem)" if bad.size > 1 else ""
            raise CandleDataError(message + more, source=source, row=int(bad[0]) + row_offset, column=column)

    fail_where((columns["timestamp"] < 0) | (columns["timestamp"] >= LATEST_TIMESTAMP), "timestamp",
               "timestamp out of range: times must fall between 1970 and 2100 (epoch seconds or milliseconds)")
    for name in ("open", "high", "low", "close", "volume"):
        fail_where(~np.isfinite(columns[name]), name, "value is missing, NaN or infinite")
    for name in PRICE_COLUMNS:
        fail_where(columns[name] <= 0, name, "price must be positive")
    fail_where(columns["volume"] < 0, "volume", "volume must not be negative")
    steps = np.diff(columns["timestamp"])
    fail_where(np.concatenate([[False], steps == 0]), "timestamp", "duplicate timestamp (same as the row before)")
    fail_where(np.concatenate([[False], steps < 0]), "timestamp",
               "timestamps must increase (this row is earlier than the row before); sort the file by time")
    high_, low_ = columns["high"], columns["low"]
    fail_where(high_ < low_, "high", "high is below low")
    for name in ("open", "close"):
        fail_where((columns[name] > high_) | (columns[name] < low_), name, f"{name} is outside the bar's [low, high]")
    for values in columns.values():
        values.flags.writeable = False
    return Candles(**columns, source=source)


def load_candles(path: str | Path) -> Candles:
    """Load a CSV (optionally gzipped) or Parquet file; columns are matched by name, case-insensitively, in any
    order."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise CandleDataError("file not found", source=source)
    suffix = "".join(path.suffixes[-2:]).lower() if path.name.lower().endswith(".csv.gz") else path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame, row_offset = pd.read_parquet(path), 1
        frame = frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
    elif suffix in (".csv", ".csv.gz", ".txt", ""):  # pandas reads gzip by the file name
        frame = _read_csv(path, source)
        row_offset = 2
    else:
        raise CandleDataError(f"unsupported file type '{suffix}': use .csv, .csv.gz or .parquet", source=source)
    return _candles_from_frame(frame, source, row_offset)


def _read_csv(path: Path, source: str) -> pd.DataFrame:
    """Every field as text; what cannot be read as a CSV is a ``CandleDataError`` saying why, never pandas' own."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise CandleDataError("the file is empty", source=source) from None
    except UnicodeDecodeError:
        raise CandleDataError("the file is not UTF-8 text: save it as a plain CSV (compressed, it must be named "
                              ".csv.gz and sit in the data folder)", source=source) from None
    except pd.errors.ParserError as exc:
        reason = str(exc).strip().removeprefix("Error tokenizing data. C error: ")
        raise CandleDataError(f"not a well-formed CSV: {reason}", source=source) from None
    except (OSError, EOFError) as exc:  # a .csv.gz that is not gzip, or cut short
        raise CandleDataError(f"the file cannot be read: {exc or type(exc).__name__}", source=source) from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas made the fields beyond the header's into an index
        named = {str(name).strip().lower() for name in frame.columns}
        missing = [name for name in REQUIRED_COLUMNS if name not in named]
        hint = f": the header lacks {', '.join(missing)}" if missing else " (a comma too many?)"
        raise CandleDataError(f"the rows have more fields than the header's {len(frame.columns)}{hint}", source=source,
                              row=2, column=missing[0] if missing else None)
    return frame


def _candles_from_frame(frame: pd.DataFrame, source: str, row_offset: int) -> Candles:
    by_lower = {str(name).strip().lower(): name for name in frame.columns}
    missing = [name for name in REQUIRED_COLUMNS if name not in by_lower]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise CandleDataError(f"missing column(s) {', '.join(missing)}; found: {found}", source=source,
                              column=missing[0])
    if frame.empty:
        raise CandleDataError("no candles (the file has a header but no data rows)", source=source)
    values = {}
    for name in REQUIRED_COLUMNS[1:]:
        raw = frame[by_lower[name]]
        numeric = pd.to_numeric(raw, errors="coerce")
        text = raw.astype(str).str.strip().str.lower()
        not_a_number = numeric.isna() & ~text.isin(["nan", "", "none", "null"])
        if not_a_number.any():
            bad = np.flatnonzero(not_a_number.to_numpy())
            more = f" ({bad.size} rows have this problem)" if bad.size > 1 else ""
            raise CandleDataError(f"'{raw.iloc[bad[0]]}' is not a number{more}", source=source,
                                  row=int(bad[0]) + row_offset, column=name)
        values[name] = numeric.to_numpy(dtype=np.float64)
    timestamp = _parse_timestamps(frame[by_lower["timestamp"]], source, row_offset)
    return candles_from_arrays(timestamp, values["open"], values["high"], values["low"], values["close"],
                               values["volume"], source=source, row_offset=row_offset)


def _parse_timestamps(raw: pd.Series, source: str, row_offset: int) -> np.ndarray:
    """ISO-8601 strings (naive ones are UTC) or epoch seconds / milliseconds -> int64 epoch seconds."""
    blank = (raw.isna() | (raw.astype(str).str.strip() == "")).to_numpy()
    if blank.any():
        bad = int(np.flatnonzero(blank)[0])
        raise CandleDataError("timestamp is missing", source=source, row=bad + row_offset, column="timestamp")
    numeric = pd.to_numeric(raw, errors="coerce")
    if pd.api.types.is_numeric_dtype(raw) or numeric.notna().all():
        seconds = numeric.to_numpy(dtype=np.float64)
        if not np.isfinite(seconds).all():
            bad = int(np.flatnonzero(~np.isfinite(seconds))[0])
            raise CandleDataError(f"'{raw.iloc[bad]}' is not a timestamp", source=source, row=bad + row_offset,
                                  column="timestamp")
        if np.abs(seconds).max() > _EPOCH_MS_THRESHOLD:
            seconds = seconds / 1000.0
        return np.floor(seconds).astype(np.int64)
    parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        bad = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise CandleDataError(
            f"'{raw.iloc[bad]}' is not a timestamp (use ISO-8601 like 2025-07-01 00:05:00, or epoch seconds/ms)",
            source=source, row=bad + row_offset, column="timestamp")
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
