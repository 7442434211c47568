"""DatasetRegistry: the candle files the service can mine, validated once by ``engine``.

Datasets come from the configured data folder, from uploads (kept in the upload folder) and the
built-in synthetic series. Each is loaded and validated once. Its indicator tables (every indicator at
every period of the GA's menu) are computed once, here; workers receive candles and tables through one
``ray.put`` per dataset and cache them by fingerprint, so a node holds one copy in its object store.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import ray

from client.models import DatasetInfo
from engine.backtester import MIN_WINDOW_BARS
from engine.candles import CandleDataError, Candles, load_candles
from engine.features import FeatureStore
from engine.settings import DEFAULT_PERIOD_MENU
from engine.synthetic import synthetic_candles
from serve_app.errors import Conflict, InvalidData, NotFound, TooLarge, disk_full_is_storage_full, shown
from serve_app.private import private_dir, sync_folder, write_synced

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SUFFIXES = (".csv", ".csv.gz", ".parquet")
SYNTHETIC = "synthetic"
MAX_DATASETS_WITH_TABLES = 4  # indicator tables kept ready (36 MB for the BTC file), like each worker's cache


@dataclass(eq=False)
class Dataset:
    info: DatasetInfo
    candles: Candles

    @cached_property
    def features(self) -> FeatureStore:
        """The coordinator's indicator tables for this dataset, every series the GA can draw included."""
        return menu_features(self.candles)

    @cached_property
    def ref(self) -> ray.ObjectRef:
        return put_tables(self.candles, self.features)

    def forget_tables(self) -> None:
        """Drop this registry's hold on the tables (tens of MB); a job still mining the dataset keeps its own."""
        self.__dict__.pop("features", None)
        self.__dict__.pop("ref", None)


def menu_features(candles: Candles) -> FeatureStore:
    """Indicator tables with every series the GA can draw."""
    store = FeatureStore(candles)
    store.ensure_menu(DEFAULT_PERIOD_MENU)
    return store


def put_tables(candles: Candles, features: FeatureStore) -> ray.ObjectRef:
    """(candles, indicator tables) in the object store, put once: every worker on a node maps the same copy, and
    no worker recomputes an indicator the GA can draw."""
    return ray.put((candles, features.tables()))


def _info(name: str, candles: Candles, source: str) -> DatasetInfo:
    gaps = candles.gaps
    return DatasetInfo(name=name, fingerprint=candles.fingerprint, candles=len(candles),
                       first_time=int(candles.timestamp[0]), last_time=int(candles.timestamp[-1]),
                       bar_seconds=candles.bar_seconds, gaps=gaps.count, largest_gap_seconds=gaps.largest_seconds,
                       source=source)


class DatasetRegistry:
    def __init__(self, data_dir: Path | None, upload_dir: Path, max_upload_bytes: int):
        self.data_dir = data_dir
        self.upload_dir = upload_dir
        self.max_upload_bytes = max_upload_bytes
        private_dir(self.upload_dir)  # uploads are the user's data: 0700, like the store's folder
        self._datasets: dict[str, Dataset] = {}
        self._errors: dict[str, str] = {}
        self._mined: OrderedDict[str, Dataset] = OrderedDict()  # most recently mined last
        self._lock = threading.RLock()  # uploads are parsed in threads; the registry changes under this lock

    def _files(self) -> list[tuple[Path, str]]:
        found = []
        for folder, source in ((self.data_dir, "data_dir"), (self.upload_dir, "upload")):
            if folder is not None and folder.is_dir():
                found += [(p, source) for p in sorted(folder.iterdir())
                          if p.name.lower().endswith(SUFFIXES) and not p.name.startswith(".")]
        return found

    @staticmethod
    def _name(path: Path) -> str:
        """The file name without its suffix: ``BTC-USD_FIVE_MINUTE.csv.gz`` -> ``BTC-USD_FIVE_MINUTE``."""
        return next(path.name[:-len(s)] for s in SUFFIXES if path.name.lower().endswith(s))

    def refresh(self) -> None:
        """Load files not seen yet; a file that fails validation is reported, not served."""
        with self._lock:
            self._load_new()

    def _load_new(self) -> None:
        for path, source in self._files():
            name = self._name(path)
            if name not in self._datasets and name not in self._errors:
                try:
                    self._datasets[name] = Dataset(_info(name, c := load_candles(path), source), c)
                except CandleDataError as exc:
                    self._errors[name] = str(exc)
        if SYNTHETIC not in self._datasets:
            candles = synthetic_candles()
            self._datasets[SYNTHETIC] = Dataset(_info(SYNTHETIC, candles, "synthetic"), candles)

    def list(self) -> list[DatasetInfo]:
        with self._lock:
            self._load_new()
            return [d.info for _, d in sorted(self._datasets.items())]

    def get(self, name: str) -> Dataset:
        with self._lock:
            if name not in self._datasets:
                self._load_new()
            if name in self._errors:
                raise InvalidData(f"dataset '{name}' cannot be used: {self._errors[name]}")
            if name not in self._datasets:
                known = ", ".join(sorted(self._datasets)) or "none"
                raise NotFound(f"unknown dataset '{shown(name)}'; available: {known}")
            return self._datasets[name]

    def mined(self, dataset: Dataset) -> None:
        """Note that a job mines ``dataset``; beyond MAX_DATASETS_WITH_TABLES, the least recently mined one's
        tables are forgotten, so a service that has mined many datasets over weeks holds a bounded few."""
        self._mined[dataset.info.name] = dataset
        self._mined.move_to_end(dataset.info.name)
        while len(self._mined) > MAX_DATASETS_WITH_TABLES:
            _, oldest = self._mined.popitem(last=False)
            oldest.forget_tables()

    def add_upload(self, name: str, content: bytes) -> DatasetInfo:
        """Validate and keep an uploaded CSV. An existing name is only accepted with identical content.

        Thread-safe, and meant to run in a thread: parsing a large file takes seconds, during which the caller's event
        loop keeps serving; only the registration at the end holds the registry's lock."""
        if not NAME_PATTERN.match(name):
            raise InvalidData(f"dataset name '{name}' must be 1-100 letters, digits, '.', '_' or '-', "
                              "starting with a letter or digit")
        if len(content) > self.max_upload_bytes:
            raise TooLarge(f"upload is {len(content) / 1e6:.1f} MB; the limit is {self.max_upload_bytes / 1e6:.0f} MB")
        staged = self.upload_dir / f".{name}.{uuid.uuid4().hex[:8]}.staged.csv"  # hidden: refresh() skips dot-files
        try:
            with disk_full_is_storage_full(self.upload_dir):  # a partial file is removed below, never kept
                write_synced(staged, content)  # on disk before its name is: jobs that name it are committed durably
            candles = load_candles(staged)
            if len(candles) < MIN_WINDOW_BARS:  # nothing could use it: neither a job nor a one-strategy backtest
                raise InvalidData(f"upload '{name}' holds {len(candles)} candles; a backtest needs at least "
                                  f"{MIN_WINDOW_BARS} (a job with the default 20 % holdout, {5 * MIN_WINDOW_BARS})")
            with self._lock:
                self._load_new()
                existing = self._datasets.get(name)
                if existing is not None:
                    if existing.info.fingerprint == candles.fingerprint:
                        return existing.info
                    raise Conflict(f"dataset '{name}' already exists with different candles; upload under a new name")
                same_but_case = next((known for known in self._datasets if known.casefold() == name.casefold()), None)
                if same_but_case is not None:  # one file on a Mac's disk, which ignores case: it would be replaced
                    raise Conflict(f"dataset '{same_but_case}' already exists, a name that differs from '{name}' only "
                                   "in case; upload under a new name")
                target = self.upload_dir / f"{name}.csv"
                try:
                    os.link(staged, target)  # never over an existing file (a rename would replace it): needs no space
                except FileExistsError:
                    raise Conflict(f"a file {target.name} is already in the upload folder; upload under a new "
                                   "name") from None
                sync_folder(self.upload_dir)
                info = _info(name, candles, "upload")
                self._datasets[name] = Dataset(info, candles)
                return info
        except CandleDataError as exc:
            raise InvalidData(str(exc).replace(str(staged), f"upload '{name}'")) from None
        finally:
            staged.unlink(missing_ok=True)
