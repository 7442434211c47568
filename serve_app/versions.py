"""What code a process runs: nodes whose versions differ from the head's are the usual cause of a two-laptop
cluster that half works (pickled classes that do not match, kernels that compile differently)."""

from __future__ import annotations

import platform

import numba
import ray

from engine.sources import DIGEST
from schema.version import package_version


def runtime_versions() -> dict[str, str]:
    """``engine`` is the digest of the engine code the process runs (``engine.sources``): one commit's checkout."""
    return {"python": platform.python_version(), "ray": ray.__version__, "numba": numba.__version__,
            "strategy-miner": package_version(), "engine": DIGEST}
