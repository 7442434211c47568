"""Numba's cache of the engine's compiled code, kept apart per version of the engine's sources.

Numba caches a compiled function and reuses it while its own source file is unchanged; the functions it calls from
other files are compiled into it, but their files are not checked (numba#6845). So after an update that changes
``engine/kernel.py`` and not ``engine/kernel_batch.py``, the batch kernel would go on running the old metrics code
from the cache, silently, or crash where an array layout changed. Hence the engine's cache lives in a folder named
after a hash of all of its source files (``engine.sources``): any change to any of them compiles afresh.

Where: ``engine/__pycache__/numba-<hash>`` (Numba's own default is that ``__pycache__``), the folders of earlier
sources removed; under ``$NUMBA_CACHE_DIR/engine-<hash>`` when that is set (a folder others may share: nothing is
removed there); in the user's cache folder when the source tree is read-only.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from engine.sources import DIGEST, SOURCES


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _prune(pycache: Path, keep: Path) -> None:
    """Remove the caches of earlier sources (best effort: another process may be doing the same)."""
    for old in pycache.glob("numba-*"):
        if old != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    for stray in [*pycache.glob("*.nbi"), *pycache.glob("*.nbc")]:  # in-tree caches from before this module
        stray.unlink(missing_ok=True)


def use_cache_of_these_sources() -> Path | None:
    """Point Numba's cache at the folder of this version of the engine's sources, before any engine function is
    compiled; the folder, or None if there is nowhere to write (Numba then compiles without caching, as it would).

    Through ``NUMBA_CACHE_DIR``, read when Numba is imported (and again whenever its environment is reloaded), so
    that importing the engine does not import Numba: a process that only scores evaluators does without it.
    Child processes inherit the folder."""
    config = sys.modules.get("numba.core.config")  # imported already: its setting counts, not the environment
    shared = config.CACHE_DIR if config is not None else os.environ.get("NUMBA_CACHE_DIR", "")
    pycache = SOURCES / "__pycache__"
    if shared and Path(shared).name in (f"numba-{DIGEST}", f"engine-{DIGEST}"):  # set for these sources already
        candidates = [Path(shared)]
    elif shared:
        candidates = [Path(shared) / f"engine-{DIGEST}"]
    else:
        user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        candidates = [pycache / f"numba-{DIGEST}", user_cache / "strategy-miner" / f"engine-{DIGEST}"]
    folder = next((candidate for candidate in candidates if _writable(candidate)), None)
    if folder is None:
        return None
    if folder.parent == pycache:
        _prune(pycache, folder)
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if config is not None:
        config.CACHE_DIR = str(folder)
    return folder
