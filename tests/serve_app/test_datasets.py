"""DatasetRegistry without Ray: validation, names, conflicts; nothing stored is ever overwritten."""

import pytest

from serve_app.datasets import MAX_DATASETS_WITH_TABLES, DatasetRegistry
from serve_app.errors import Conflict, InvalidData, NotFound, TooLarge

from .test_service import csv_bytes


@pytest.fixture
def registry(tmp_path, btc_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / btc_path.name).symlink_to(btc_path)
    (data / "bad.csv").write_text("timestamp,open,high,low,close,volume\n1,2,3\n")
    return DatasetRegistry(data, tmp_path / "uploads", max_upload_bytes=2_000_000)


def test_lists_data_dir_files_and_the_synthetic_default(registry):
    names = {d.name: d for d in registry.list()}
    assert set(names) == {"BTC-USD_FIVE_MINUTE", "synthetic"}
    assert names["BTC-USD_FIVE_MINUTE"].candles == 59_206 and names["BTC-USD_FIVE_MINUTE"].gaps == 2
    assert names["synthetic"].source == "synthetic"


def test_a_broken_file_is_reported_when_asked_for(registry):
    registry.list()
    with pytest.raises(InvalidData, match="dataset 'bad' cannot be used"):
        registry.get("bad")
    with pytest.raises(NotFound, match="available: BTC-USD_FIVE_MINUTE, synthetic"):
        registry.get("eth")


def test_uploads_are_validated_kept_and_never_overwritten(registry, tmp_path):
    info = registry.add_upload("mine", csv_bytes())
    assert (tmp_path / "uploads" / "mine.csv").exists() and info.source == "upload"
    assert registry.add_upload("mine", csv_bytes()) == info
    with pytest.raises(Conflict):
        registry.add_upload("mine", csv_bytes(seed=9))
    assert registry.get("mine").info.fingerprint == info.fingerprint
    with pytest.raises(Conflict):
        registry.add_upload("BTC-USD_FIVE_MINUTE", csv_bytes())
    with pytest.raises(InvalidData, match="upload 'oops', row 2, column 'close'"):
        registry.add_upload("oops", b"timestamp,open,high,low,close,volume\n1751328000,1,2,0.5,x,1\n")
    with pytest.raises(TooLarge):
        registry.add_upload("big", b"x" * 2_000_001)
    assert not (tmp_path / "uploads" / "oops.csv").exists()
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == ["mine.csv"]


def test_a_name_that_differs_only_in_case_is_refused_as_a_mac_disk_would_overwrite_the_file(registry, tmp_path):
    info = registry.add_upload("mine", csv_bytes())
    with pytest.raises(Conflict, match="'mine' already exists, a name that differs from 'MINE' only in case"):
        registry.add_upload("MINE", csv_bytes(seed=9))
    with pytest.raises(Conflict, match="'BTC-USD_FIVE_MINUTE' already exists, a name that differs"):
        registry.add_upload("btc-usd_five_minute", csv_bytes())
    assert registry.get("mine").info == info and [p.name for p in (tmp_path / "uploads").iterdir()] == ["mine.csv"]


def test_an_upload_never_replaces_a_file_already_in_the_upload_folder(registry, tmp_path):
    registry.list()
    (tmp_path / "uploads" / "later.csv").write_text("kept as it is\n")  # put there by hand after the registry looked
    registry._load_new = lambda: None  # ... and not seen yet
    with pytest.raises(Conflict, match=r"a file later\.csv is already in the upload folder"):
        registry.add_upload("later", csv_bytes())
    assert (tmp_path / "uploads" / "later.csv").read_text() == "kept as it is\n"
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == ["later.csv"]


def test_only_the_most_recently_mined_datasets_keep_their_indicator_tables(registry):
    names = [f"pair{i}" for i in range(MAX_DATASETS_WITH_TABLES + 1)]
    for seed, name in enumerate(names):
        registry.add_upload(name, csv_bytes(n=600, seed=seed))
    held_by_a_job = registry.get(names[0]).features
    for name in names:
        dataset = registry.get(name)
        registry.mined(dataset)
        assert dataset.features.tables()  # built on first use
    assert "features" not in registry.get(names[0]).__dict__  # the oldest is forgotten by the registry...
    assert held_by_a_job.tables()  # ...while a job holding it keeps working
    assert all("features" in registry.get(name).__dict__ for name in names[1:])
    registry.mined(registry.get(names[0]))  # mined again: rebuilt on use, and the next oldest goes
    assert registry.get(names[0]).features is not held_by_a_job
    assert "features" not in registry.get(names[1]).__dict__
