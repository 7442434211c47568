"""The installed package's version: the client and the service each report their own, so `miner doctor` can tell
a laptop that runs other code than the head."""

from __future__ import annotations

from importlib import metadata

PACKAGE = "strategy-miner"


def package_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
