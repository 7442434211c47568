"""Download candles from Coinbase's public Advanced Trade API into a CSV the loader accepts.

``GET /api/v3/brokerage/market/products/{product}/candles?start=&end=&granularity=&limit=`` needs no
key, answers newest-first and at most 350 candles per request. The download walks forward in windows,
appends each window to the CSV as it arrives (so an interrupted download resumes from the file's last
timestamp), waits between requests and backs off on 429/5xx, honouring ``Retry-After``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

API_URL = "https://api.coinbase.com/api/v3/brokerage/market/products/{product}/candles"
GRANULARITY_SECONDS = {
    "ONE_MINUTE": 60, "FIVE_MINUTE": 300, "FIFTEEN_MINUTE": 900, "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600, "TWO_HOUR": 7200, "SIX_HOUR": 21600, "ONE_DAY": 86400,
}
CSV_COLUMNS = ("timestamp", "low", "high", "open", "close", "volume")  # Coinbase's own order
MAX_CANDLES_PER_REQUEST = 300


class DownloadError(RuntimeError):
    """The API refused the request (after retries) or answered something unusable."""


def _last_timestamp(path: Path) -> int | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open() as handle:
        rows = list(csv.reader(handle))
    return int(rows[-1][0]) if len(rows) > 1 else None


def download_candles(
    path: str | Path,
    start: int,
    end: int,
    *,
    product: str = "BTC-USD",
    granularity: str = "FIVE_MINUTE",
    client: httpx.Client | None = None,
    pause_s: float = 0.15,
    max_retries: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Fetch candles with start times in [start, end) (epoch seconds) into ``path``; return rows written.

    If ``path`` already holds rows, the download resumes after its last timestamp.
    """
    if granularity not in GRANULARITY_SECONDS:
        raise ValueError(f"unknown granularity '{granularity}'; use one of {', '.join(GRANULARITY_SECONDS)}")
    step = GRANULARITY_SECONDS[granularity]
    path = Path(path)
    last = _last_timestamp(path)
    cursor = start if last is None else max(start, last + step)
    own_client = client is None
    client = client or httpx.Client(timeout=30.0)
    written = 0
    try:
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if last is None:
                handle.truncate(0)
                writer.writerow(CSV_COLUMNS)
            while cursor < end:
                window_end = min(cursor + step * MAX_CANDLES_PER_REQUEST, end)
                rows = _fetch_window(client, product, granularity, cursor, window_end, max_retries, sleep)
                for row in rows:
                    writer.writerow(row)
                handle.flush()
                written += len(rows)
                cursor = window_end
                if on_progress:
                    on_progress(cursor - start, end - start)
                if cursor < end:
                    sleep(pause_s)
    finally:
        if own_client:
            client.close()
    return written


def _fetch_window(client: httpx.Client, product: str, granularity: str, start: int, end: int,
                  max_retries: int, sleep: Callable[[float], None]) -> list[tuple]:
    """Candles with start in [start, end), oldest first. The API's ``end`` is inclusive, hence end - 1."""
    params = {"start": str(start), "end": str(end - 1), "granularity": granularity,
              "limit": str(MAX_CANDLES_PER_REQUEST)}
    url = API_URL.format(product=product)
    attempt = 0
    while True:
        retry = f"after {max_retries} retries" if attempt == max_retries else None
        try:
            response = client.get(url, params=params)
        except httpx.TransportError as exc:
            if retry:
                raise DownloadError(f"cannot reach {url} {retry}: {exc}") from exc
            sleep(min(2.0 ** attempt, 30.0))
            attempt += 1
            continue
        if response.status_code == 429 or response.status_code >= 500:
            if retry:
                raise DownloadError(f"{url} kept answering HTTP {response.status_code} {retry}")
            retry_after = response.headers.get("Retry-After", "")
            sleep(float(retry_after) if retry_after.replace(".", "", 1).isdigit() else min(2.0 ** attempt, 30.0))
            attempt += 1
            continue
        if response.status_code != 200:
            raise DownloadError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            candles = response.json()["candles"]
            rows = sorted((int(c["start"]), c["low"], c["high"], c["open"], c["close"], c["volume"])
                          for c in candles)
        except (ValueError, KeyError, TypeError) as exc:
            raise DownloadError(f"{url} answered an unexpected body: {response.text[:200]}") from exc
        return [row for row in rows if start <= row[0] < end]


def _epoch(text: str) -> int:
    """ISO date/time (UTC) or epoch seconds -> epoch seconds."""
    if text.isdigit():
        return int(text)
    parsed = datetime.fromisoformat(text)
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="miner-download", description="Download Coinbase candles to CSV.")
    parser.add_argument("--product", default="BTC-USD")
    parser.add_argument("--granularity", default="FIVE_MINUTE", choices=sorted(GRANULARITY_SECONDS))
    parser.add_argument("--start", required=True, help="UTC date/time (2025-07-01) or epoch seconds")
    parser.add_argument("--end", required=True, help="UTC date/time or epoch seconds (exclusive)")
    parser.add_argument("--out", required=True, help="CSV file; an existing one is resumed")
    args = parser.parse_args(argv)
    try:
        start, end = _epoch(args.start), _epoch(args.end)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if end <= start:
        print("error: --end must be after --start", file=sys.stderr)
        return 2
    try:
        rows = download_candles(args.out, start, end, product=args.product, granularity=args.granularity,
                                on_progress=lambda done, total: print(f"\r{done / total:6.1%}", end="", flush=True))
    except DownloadError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 3
    print(f"\n{rows} candles written to {args.out}")
    return 0
