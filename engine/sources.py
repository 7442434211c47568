"""Which engine code a process runs: a hash of the engine's source files as this process imported them.

The same genome backtested by two different versions of the engine can get different metrics, so a job spread over
workers that run different engine code (a laptop whose checkout was not updated) would depend on where its batches
ran. The service gives no work to a worker whose digest differs from the coordinator's (``serve_app.pool``),
``miner doctor`` names such a node, and Numba's cache is kept per digest (``engine.numba_cache``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SOURCES = Path(__file__).resolve().parent


def digest_of(folder: Path) -> str:
    """A hash of every Python source file in ``folder``, names and contents.

    Hidden files are not sources: an editor's lock file (Emacs' ``.#kernel.py``, a dangling link) or macOS's
    ``._kernel.py`` copies on shared volumes would make importing fail or give one node another digest."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        if not path.name.startswith(".") and path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


DIGEST = digest_of(SOURCES)  # at import: the code this process runs, even if the files change later


def checkout_digest() -> str:
    """The digest of the engine's files on disk now: not ``DIGEST`` once the checkout was updated after this process
    imported the engine (a long-lived service that was not restarted)."""
    return digest_of(SOURCES)
