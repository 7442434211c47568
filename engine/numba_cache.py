"""Numba's cache of the engine's compiled code, kept apart per version of the engine's sources.

Numba caches a compiled function and reuses it while its own source file is unchanged; the functions it calls from
other files are compiled into it, but their files are not checked (numba#6845). So after an update that changes
``engine/kernel.py`` and not ``engine/kernel_batch.py``, the batch kernel would go on running the old metrics code
from the cache, silently, or crash where an array layout changed. Hence the engine's cache lives in a folder named
after a hash of all of its source files (``engine.sources``): any change to any of them compiles afresh.

Where: ``engine/__pycache__/numba-<hash>`` (Numba's own default is that ``__pycache__``), the folders of earlier
sources removed unless a running process still uses them (each holds a shared lock on its folder's ``.in-use``);
under ``$NUMBA_CACHE_DIR/engine-<hash>`` when that is set (a folder others may share: nothing is removed there); in
the user's cache folder when the source tree is read-only; in a new temporary folder when nothing else can be
written.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from engine.sources import DIGEST, SOURCES

IN_USE = ".in-use"  # a marker each process using a cache folder holds a shared lock on
_HELD: list[int] = []  # this process's marker, kept open


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _mark_in_use(folder: Path) -> None:
    """Hold a shared lock on the folder's marker for the rest of this process's life: no process running newer
    sources prunes a cache that this one may still write to (Ray workers started before a ``git pull``)."""
    try:
        descriptor = os.open(folder / IN_USE, os.O_RDONLY | os.O_CREAT, 0o644)
        fcntl.flock(descriptor, fcntl.LOCK_SH)
    except OSError:
        return
    _HELD.append(descriptor)  # released by the system when the process ends


def _prune(pycache: Path, keep: Path) -> None:
    """Remove the caches of earlier sources that no running process uses (best effort: another process may be
    doing the same)."""
    for old in pycache.glob("numba-*"):
        if old == keep or not old.is_dir():
            continue
        try:
            descriptor = os.open(old / IN_USE, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while removing: no process takes it up
            shutil.rmtree(old, ignore_errors=True)
        except BlockingIOError:  # a process of those sources is running
            pass
        finally:
            os.close(descriptor)
    for stray in [*pycache.glob("*.nbi"), *pycache.glob("*.nbc")]:  # in-tree caches from before this module
        stray.unlink(missing_ok=True)


def _user_cache() -> Path | None:
    """``$XDG_CACHE_HOME`` or ``~/.cache``; None where there is no home (a container's uid without a passwd entry)."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"])
    try:
        return Path.home() / ".cache"
    except RuntimeError:
        return None


def _candidates(shared: str, pycache: Path) -> Iterator[Path]:
    """The folders to try, best first; each is made only when the ones before it failed."""
    if shared and Path(shared).name.startswith((f"numba-{DIGEST}", f"engine-{DIGEST}")):  # set for these sources
        yield Path(shared)
    elif shared:
        yield Path(shared) / f"engine-{DIGEST}"
    else:
        yield pycache / f"numba-{DIGEST}"
        user_cache = _user_cache()
        if user_cache is not None:
            yield user_cache / "strategy-miner" / f"engine-{DIGEST}"


def use_cache_of_these_sources() -> Path:
    """Point Numba's cache at the folder of this version of the engine's sources, before any engine function is
    compiled, and return it. Where none of the usual folders can be written, a new temporary one: Numba would
    otherwise fall back to a user-wide cache of its own, which checks each function's own file only.

    Through ``NUMBA_CACHE_DIR``, read when Numba is imported (and again whenever its environment is reloaded), so
    that importing the engine does not import Numba: a process that only scores evaluators does without it.
    Child processes inherit the folder."""
    config = sys.modules.get("numba.core.config")  # imported already: its setting counts, not the environment
    shared = config.CACHE_DIR if config is not None else os.environ.get("NUMBA_CACHE_DIR", "")
    pycache = SOURCES / "__pycache__"
    folder = next((candidate for candidate in _candidates(shared, pycache) if _writable(candidate)), None)
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix=f"engine-{DIGEST}-"))
    elif folder.parent == pycache:
        _mark_in_use(folder)
        _prune(pycache, folder)
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if config is not None:
        config.CACHE_DIR = str(folder)
    return folder
