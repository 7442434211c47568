"""Numba's cache must not serve compiled code whose callees changed in another file of the engine.

Numba stamps a cached function with its own source file only; what it calls from other files is compiled into it
unchecked (numba#6845). The engine keeps its cache per version of all its sources (``engine.numba_cache``). Each
case below copies the engine into a temporary folder with two probe modules, a cached caller in one file and its
callee in another, runs the caller in a fresh process, changes only the callee's file and runs it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import numba_cache
from engine.sources import DIGEST

ENGINE = Path(__file__).resolve().parents[2] / "engine"
CALLER = """from numba import njit

from engine._probe_callee import value


@njit(cache=True)
def read():
    return value()
"""
CALLEE = """from numba import njit


@njit(cache=True)
def value():
    return {}
"""
READ = "import engine; from engine._probe_caller import read; print(read())"


@pytest.fixture
def engine_copy(tmp_path):
    shutil.copytree(ENGINE, tmp_path / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "engine" / "_probe_caller.py").write_text(CALLER)
    (tmp_path / "engine" / "_probe_callee.py").write_text(CALLEE.format(1))
    return tmp_path


def read_in_fresh_process(root: Path, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")} | env | {"PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", READ], cwd=root, env=environ, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def cache_indexes(folder: Path) -> list[Path]:
    return sorted(folder.rglob("_probe_caller.read-*.nbi"))


def test_a_change_in_a_callee_file_is_compiled_not_read_from_the_stale_cache(engine_copy):
    pycache = engine_copy / "engine" / "__pycache__"
    assert read_in_fresh_process(engine_copy) == "1"
    first = cache_indexes(pycache)
    assert first  # the caller was cached, so a stale cache could be served
    assert read_in_fresh_process(engine_copy) == "1"  # and served from it while nothing changed
    assert cache_indexes(pycache) == first

    (engine_copy / "engine" / "_probe_callee.py").write_text(CALLEE.format(2))
    assert read_in_fresh_process(engine_copy) == "2"
    assert len(cache_indexes(pycache)) == 1 and cache_indexes(pycache) != first  # the old sources' cache is gone


def test_with_numba_cache_dir_set_the_engine_cache_is_kept_there_per_version_of_its_sources(engine_copy, tmp_path):
    shared = tmp_path / "shared-numba-cache"
    assert read_in_fresh_process(engine_copy, NUMBA_CACHE_DIR=str(shared)) == "1"
    (engine_copy / "engine" / "_probe_callee.py").write_text(CALLEE.format(2))
    assert read_in_fresh_process(engine_copy, NUMBA_CACHE_DIR=str(shared)) == "2"
    # both versions' caches are there: a folder others may share is not pruned
    assert len(cache_indexes(shared)) == 2
    assert not (engine_copy / "engine" / "__pycache__").exists() or not cache_indexes(engine_copy / "engine")


@pytest.fixture
def numba_settings_restored(monkeypatch):
    """The test may point this process's Numba cache elsewhere: both places it is read from come back after it."""
    config = pytest.importorskip("numba.core.config")
    monkeypatch.setattr(config, "CACHE_DIR", config.CACHE_DIR)
    monkeypatch.setenv("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR", ""))
    return config


def test_without_a_home_the_user_cache_is_skipped_not_a_crash(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    assert numba_cache._user_cache() is None
    assert list(numba_cache._candidates("", Path("/nowhere"))) == [Path("/nowhere") / f"numba-{DIGEST}"]


def test_where_nothing_can_be_written_a_private_temporary_folder_is_used(monkeypatch, numba_settings_restored):
    """Not Numba's own user-wide fallback, which would check each function's own file only."""
    monkeypatch.setattr(numba_cache, "_writable", lambda folder: False)
    numba_settings_restored.CACHE_DIR = ""
    folder = numba_cache.use_cache_of_these_sources()
    try:
        assert folder.is_dir() and folder.name.startswith(f"engine-{DIGEST}-")
        assert os.environ["NUMBA_CACHE_DIR"] == numba_settings_restored.CACHE_DIR == str(folder)
        assert list(numba_cache._candidates(str(folder), Path("/nowhere"))) == [folder]  # a child keeps it
    finally:
        folder.rmdir()


def test_the_cache_of_earlier_sources_is_kept_while_a_process_running_them_lives(engine_copy):
    """Ray workers started before a `git pull` may still compile into their cache: it goes once they have ended."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")} | {"PYTHONPATH": str(engine_copy)}
    running = subprocess.Popen([sys.executable, "-c", f"{READ}; import sys; sys.stdin.read()"], cwd=engine_copy,
                               env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert running.stdout.readline().strip() == "1"  # it runs the first sources, and holds their cache
        (earlier,) = (engine_copy / "engine" / "__pycache__").glob("numba-*")
        (engine_copy / "engine" / "_probe_callee.py").write_text(CALLEE.format(2))
        assert read_in_fresh_process(engine_copy) == "2"
        assert earlier.is_dir() and cache_indexes(earlier)  # in use: kept
    finally:
        running.stdin.close()
        running.wait(timeout=60)
    assert read_in_fresh_process(engine_copy) == "2"
    assert not earlier.exists()  # no process uses it any more: pruned
