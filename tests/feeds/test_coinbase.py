"""The downloader against recorded-format responses served by httpx.MockTransport (no network here)."""

import json

import httpx
import pytest

from engine.candles import load_candles
from feeds.coinbase import DownloadError, download_candles

START = 1_751_328_000  # 2025-07-01 00:00 UTC


def fake_api(total_bars: int, fail_first: dict | None = None):
    """Serve candles the way the public API does: newest first, at most 350, string fields."""
    calls = []
    failures = dict(fail_first or {})

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(dict(request.url.params))
        if failures:
            status, headers = failures.popitem()
            return httpx.Response(status, headers=headers, text="slow down")
        assert request.url.path == "/api/v3/brokerage/market/products/BTC-USD/candles"
        start, end = int(request.url.params["start"]), int(request.url.params["end"])
        candles = []
        for t in range(start, end + 1, 300):
            k = (t - START) // 300
            if 0 <= k < total_bars:
                price = 100 + k
                candles.append({"start": str(t), "low": str(price - 1), "high": str(price + 1),
                                "open": str(price), "close": str(price + 0.5), "volume": "1.5"})
        return httpx.Response(200, text=json.dumps({"candles": candles[::-1][:350]}))

    return handler, calls


def test_downloads_all_windows_into_a_loadable_csv(tmp_path):
    handler, calls = fake_api(1_000)
    path = tmp_path / "btc.csv"
    naps = []
    client = httpx.Client(transport=httpx.MockTransport(handler))
    rows = download_candles(path, START, START + 1_000 * 300, client=client, sleep=naps.append)
    assert rows == 1_000 and len(calls) == 4 and len(naps) == 3
    candles = load_candles(path)
    assert len(candles) == 1_000 and candles.timestamp[0] == START and candles.close[-1] == 100 + 999 + 0.5
    assert path.read_text().splitlines()[0] == "timestamp,low,high,open,close,volume"


def test_resumes_after_the_last_row(tmp_path):
    handler, calls = fake_api(1_000)
    client = httpx.Client(transport=httpx.MockTransport(handler))
    path = tmp_path / "btc.csv"
    download_candles(path, START, START + 400 * 300, client=client, sleep=lambda s: None)
    calls.clear()
    rows = download_candles(path, START, START + 1_000 * 300, client=client, sleep=lambda s: None)
    assert rows == 600 and int(calls[0]["start"]) == START + 400 * 300
    assert len(load_candles(path)) == 1_000


def test_backs_off_on_rate_limit_honouring_retry_after(tmp_path):
    handler, _ = fake_api(10, fail_first={429: {"Retry-After": "2"}})
    naps = []
    download_candles(tmp_path / "b.csv", START, START + 10 * 300,
                     client=httpx.Client(transport=httpx.MockTransport(handler)), sleep=naps.append)
    assert naps == [2.0]


def test_gives_up_with_a_clear_error(tmp_path):
    def always_busy(request):
        return httpx.Response(503)

    with pytest.raises(DownloadError, match="kept answering HTTP 503 after 2 retries"):
        download_candles(tmp_path / "b.csv", START, START + 300, max_retries=2, sleep=lambda s: None,
                         client=httpx.Client(transport=httpx.MockTransport(always_busy)))
    with pytest.raises(ValueError, match="unknown granularity"):
        download_candles(tmp_path / "b.csv", START, START + 300, granularity="5m")


def test_cli_rejects_bad_dates(capsys):
    from feeds.coinbase import main

    assert main(["--start", "2025-07-02", "--end", "2025-07-01", "--out", "x.csv"]) == 2
    assert "--end must be after --start" in capsys.readouterr().err
    assert main(["--start", "july", "--end", "2025-07-01", "--out", "x.csv"]) == 2
    assert "july" in capsys.readouterr().err
