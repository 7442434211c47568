"""The service's long-lived processes keep their start-up objects out of full garbage collections."""

import gc

import ray

from serve_app.config import COORDINATOR_NAME, NAMESPACE
from serve_app.gc_pauses import settle_startup_objects


def collector_view(actor) -> tuple[int, int]:
    """(objects kept out of collections, objects a full collection scans) in an actor's process."""
    return ray.get(actor.__ray_call__.remote(lambda _: (gc.get_freeze_count(), len(gc.get_objects()))))


class _Kept:
    """An object the collector tracks (an instance of a class of this module)."""


def test_settling_keeps_the_objects_alive_now_out_of_collections():
    made_before = _Kept()
    try:
        settle_startup_objects()
        assert gc.get_freeze_count() > 0
        assert not any(o is made_before for o in gc.get_objects())
    finally:
        gc.unfreeze()


def test_the_coordinator_and_the_workers_settle_their_start_up_objects(service):
    coordinator = ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
    workers = ray.get(coordinator.__ray_call__.remote(lambda self: [w.handle for w in self.pool._workers.values()
                                                                   if w.ready]))
    for actor in [coordinator, *workers]:
        frozen, scanned = collector_view(actor)
        assert frozen > scanned, "a full collection scans more than the process made since it started"
