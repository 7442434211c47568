import gzip

import numpy as np
import pandas as pd
import pytest

from engine.candles import CandleDataError, candles_from_arrays, load_candles
from engine.synthetic import synthetic_candles

HEADER = "timestamp,low,high,open,close,volume\n"
GOOD_ROWS = [
    "2025-07-01 00:00:00,99,101,100,100.5,3",
    "2025-07-01 00:05:00,100,102,100.5,101,4",
    "2025-07-01 00:10:00,100.5,103,101,102,5",
]


def write(tmp_path, rows, header=HEADER, name="c.csv"):
    path = tmp_path / name
    path.write_text(header + "\n".join(rows) + ("\n" if rows else ""))
    return path


def test_the_shipped_gzip_file_is_the_real_dataset(btc_candles):
    from tests.conftest import BTC_CSV

    assert BTC_CSV.name == "BTC-USD_FIVE_MINUTE.csv.gz" and BTC_CSV.parent.name == "data"
    # the 59,206 Coinbase candles from 2025-07-01 to 2026-01-22 (content hash of the original CSV)
    assert btc_candles.fingerprint == "sha256:71a24465f707012e2e9c531467f56f7b"
    assert btc_candles.timestamp[-1] < pd.Timestamp("2026-01-23", tz="UTC").value // 10**9


def test_real_dataset_loads_with_its_two_gaps(btc_candles):
    assert len(btc_candles) == 59_206
    assert btc_candles.bar_seconds == 300
    assert btc_candles.gaps.count == 2
    assert btc_candles.gaps.largest_seconds > 300
    assert btc_candles.timestamp[0] == pd.Timestamp("2025-07-01", tz="UTC").value // 10**9
    assert btc_candles.close.dtype == np.float64 and btc_candles.timestamp.dtype == np.int64


def test_columns_matched_case_insensitively_in_any_order(tmp_path):
    path = write(tmp_path, GOOD_ROWS, header="Volume,CLOSE,Open,High,Low,TimeStamp\n")
    path.write_text("Volume,CLOSE,Open,High,Low,TimeStamp\n3,100.5,100,101,99,1751328000\n"
                    "4,101,100.5,102,100,1751328300\n")
    candles = load_candles(path)
    assert list(candles.close) == [100.5, 101.0]
    assert list(candles.timestamp) == [1751328000, 1751328300]


def test_epoch_milliseconds_and_iso_strings_agree(tmp_path):
    iso = load_candles(write(tmp_path, GOOD_ROWS, name="iso.csv"))
    ms_rows = [f"{int(t) * 1000}," + row.split(",", 1)[1] for t, row in zip(iso.timestamp, GOOD_ROWS, strict=True)]
    ms = load_candles(write(tmp_path, ms_rows, name="ms.csv"))
    assert list(ms.timestamp) == list(iso.timestamp)
    assert ms.fingerprint == iso.fingerprint


def test_parquet_loads_like_csv(tmp_path):
    csv = load_candles(write(tmp_path, GOOD_ROWS))
    frame = pd.DataFrame({"timestamp": csv.timestamp, "open": csv.open, "high": csv.high, "low": csv.low,
                          "close": csv.close, "volume": csv.volume})
    frame.to_parquet(tmp_path / "c.parquet")
    assert load_candles(tmp_path / "c.parquet").fingerprint == csv.fingerprint


def test_candles_are_immutable(tmp_path):
    candles = load_candles(write(tmp_path, GOOD_ROWS))
    with pytest.raises(ValueError):
        candles.close[0] = 1.0


def test_fingerprint_changes_with_content(tmp_path):
    a = load_candles(write(tmp_path, GOOD_ROWS, name="a.csv"))
    b = load_candles(write(tmp_path, [*GOOD_ROWS[:2], GOOD_ROWS[2].replace(",5", ",6")], name="b.csv"))
    assert a.fingerprint != b.fingerprint


@pytest.mark.parametrize(
    ("rows", "header", "row", "column", "words"),
    [
        (GOOD_ROWS, "timestamp,low,high,open,close\n", 2, "volume",
         "more fields than the header's 5: the header lacks volume"),
        ([r.rsplit(",", 1)[0] for r in GOOD_ROWS], "timestamp,low,high,open,close\n", None, "volume",
         "missing column(s) volume"),
        ([GOOD_ROWS[0], "2025-07-01 00:05:00,100,102,abc,101,4"], HEADER, 3, "open", "'abc' is not a number"),
        ([GOOD_ROWS[0], "2025-07-01 00:05:00,100,102,100.5,NaN,4"], HEADER, 3, "close", "NaN"),
        ([GOOD_ROWS[0], GOOD_ROWS[0].replace(",99,", ",98,")], HEADER, 3, "timestamp", "duplicate timestamp"),
        ([GOOD_ROWS[1], GOOD_ROWS[0]], HEADER, 3, "timestamp", "must increase"),
        ([GOOD_ROWS[0], "2025-07-01 00:05:00,103,102,102.5,102.5,4"], HEADER, 3, "high", "high is below low"),
        ([GOOD_ROWS[0], "2025-07-01 00:05:00,100,102,105,101,4"], HEADER, 3, "open", "outside the bar"),
        ([GOOD_ROWS[0], "2025-07-01 00:05:00,100,102,101,99,4"], HEADER, 3, "close", "outside the bar"),
        (["2025-07-01 00:00:00,0,101,100,100.5,3"], HEADER, 2, "low", "price must be positive"),
        (["yesterday,99,101,100,100.5,3"], HEADER, 2, "timestamp", "is not a timestamp"),
        (["1751328000,99,101,100,100.5,3", " ,99,101,100,100.5,3"], HEADER, 3, "timestamp", "timestamp is missing"),
        ([], HEADER, None, None, "no candles"),
        (["inf,99,101,100,100.5,3"], HEADER, 2, "timestamp", "'inf' is not a timestamp"),
        (["100000000000000000,99,101,100,100.5,3"], HEADER, 2, "timestamp", "timestamp out of range"),  # year 3e6
        (["2150-01-01 00:00:00,99,101,100,100.5,3"], HEADER, 2, "timestamp", "between 1970 and 2100"),
        (["1751328000,99,101,100,100.5,3,7,8"], HEADER, 2, None, "more fields than the header's 6"),
        ([GOOD_ROWS[0], "1,2,3,4,5,6,7,8,9"], HEADER, None, None, "not a well-formed CSV: Expected 6 fields in line 3"),
        (['"1751328000,99,101,100,100.5,3'], HEADER, None, None, "not a well-formed CSV: EOF inside string"),
    ],
)
def test_bad_files_name_file_row_and_column(tmp_path, rows, header, row, column, words):
    path = write(tmp_path, rows, header=header)
    with pytest.raises(CandleDataError) as info:
        load_candles(path)
    error = info.value
    assert str(path) in str(error) and words in str(error)
    assert (error.row, error.column) == (row, column)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(CandleDataError, match="the file is empty"):
        load_candles(path)


def test_counts_rows_sharing_a_problem(tmp_path):
    rows = [GOOD_ROWS[0], "2025-07-01 00:05:00,100,102,x,101,4", "2025-07-01 00:10:00,100,102,y,101,4"]
    with pytest.raises(CandleDataError, match=r"\(2 rows have this problem\)"):
        load_candles(write(tmp_path, rows))


@pytest.mark.parametrize(("name", "content", "words"), [
    ("c.csv", gzip.compress((HEADER + GOOD_ROWS[0]).encode()), "not UTF-8 text"),  # gzipped, named .csv
    ("c.csv", (HEADER + GOOD_ROWS[0]).encode("utf-16"), "not UTF-8 text"),
    ("c.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "not UTF-8 text"),
    ("c.csv.gz", (HEADER + GOOD_ROWS[0]).encode(), "cannot be read: Not a gzipped file"),
    ("c.csv.gz", gzip.compress((HEADER + "\n".join(GOOD_ROWS)).encode())[:40], "cannot be read"),  # cut short
])
def test_files_that_are_not_csv_text_are_refused_saying_why(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CandleDataError, match=words):
        load_candles(path)


def test_sharpe_is_annualised_by_the_bars_a_year_really_holds(btc_candles):
    # round the clock without gaps: a year over the bar spacing
    assert synthetic_candles(1_000).periods_per_year == pytest.approx(365.25 * 86_400 / 300)
    # the BTC file's two gaps cost it a few bars
    assert btc_candles.periods_per_year == pytest.approx(365.25 * 86_400 / 300, rel=0.01)
    # a market open 6.5 hours on weekdays: 78 five-minute bars a day, about 20,000 a year, not 105,000
    days = pd.bdate_range("2025-01-01", periods=260)
    stamps = np.concatenate([np.arange(78) * 300 + int(day.timestamp()) + 14 * 3600 + 1800 for day in days])
    close = np.full(stamps.size, 100.0)
    session = candles_from_arrays(stamps, close, close, close, close, close)
    assert session.bar_seconds == 300 and 19_000 < session.periods_per_year < 21_000


def test_unsupported_extension(tmp_path):
    path = tmp_path / "c.xlsx"
    path.write_text("x")
    with pytest.raises(CandleDataError, match="unsupported file type"):
        load_candles(path)


def test_gaps_are_reported_not_errors(tmp_path):
    rows = [GOOD_ROWS[0], GOOD_ROWS[1], GOOD_ROWS[2].replace("00:10", "01:10")]
    candles = load_candles(write(tmp_path, rows))
    assert len(candles) == 3
    assert (candles.gaps.count, candles.gaps.largest_seconds) == (1, 3900)
