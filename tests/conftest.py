"""Shared fixtures. The real BTC-USD dataset is the one the repo ships, data/BTC-USD_FIVE_MINUTE.csv.gz."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.service_fixture"]

REPO = Path(__file__).resolve().parents[1]
BTC_CSV = Path(os.environ.get("MINER_BTC_CSV", REPO / "data" / "BTC-USD_FIVE_MINUTE.csv.gz"))


@pytest.fixture(scope="session")
def btc_path() -> Path:
    if not BTC_CSV.exists():
        pytest.fail(f"real dataset not found at {BTC_CSV} (set MINER_BTC_CSV to its path)")
    return BTC_CSV


@pytest.fixture(scope="session")
def btc_candles(btc_path):
    from engine.candles import load_candles

    return load_candles(btc_path)
