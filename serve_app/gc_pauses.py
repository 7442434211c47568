"""Short garbage-collection pauses in the service's long-lived processes.

Python's full collection scans every object a process holds. In the coordinator (Ray, Serve, pydantic, the engine
and their modules) one took 98 ms on these machines, with the event loop stopped: no batch went out, and both workers
sat idle (docs/performance.md). Nearly all those objects are made at start-up and live as long as the process, so
they are moved out of the collector's sight once, after start-up (``gc.freeze``); a full collection then scans only
what the process made since.
"""

import gc


def settle_startup_objects() -> None:
    """Collect what start-up left behind, then keep every object alive now out of later collections."""
    gc.collect()
    gc.freeze()
