"""Keep a one-machine service's Ray off the network: every port Ray opens on 127.0.0.1, its metrics exporters too.

Ray 2.60 binds its gRPC servers, the dashboard agent and the Prometheus metrics exporters (dashboard agent,
dashboard, autoscaler) to the node's address, and takes 127.0.0.1 for it only when it believes multi-node clusters
are off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the macOS default). Otherwise the node's address is the machine's
network address and the metrics exporters listen on every interface (0.0.0.0), whatever host the service itself is
bound to. A service on loopback has no other node, so it can say so. Multi-node setups cannot; docs/reliability.md
says what listens where then, and what to do.
"""

from __future__ import annotations

import os
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")
SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def keep_ray_on_loopback(host: str) -> bool:
    """If the service's ``host`` is loopback, make the Ray this process starts next loopback-only too; returns
    whether it did. Must run before ``ray`` is imported: Ray reads the switch once, at import, and its processes
    inherit it."""
    if host not in LOOPBACK:
        return False
    if "ray" in sys.modules:
        raise RuntimeError("keep_ray_on_loopback() must run before ray is imported (Ray reads "
                           f"{SWITCH} at import)")
    os.environ[SWITCH] = "0"
    return True
