"""Stop the miner service cleanly, the way a service manager stops it: nothing lost, nothing noisy.

    python -m serve_app.stop            # on the head node, before `ray stop` (deploy/stop-head.sh does both)

The coordinator goes first, on purpose: once it is gone no job can see its workers vanish under it (a lost
worker is harmless, but an error from a half-stopped cluster would mark the job failed). Every job keeps the
state the store last committed (WAL, synchronous=FULL): unfinished jobs stay ``queued`` or ``running`` and
resume from their last checkpoint on the next start, exactly as after a coordinator crash. Then the Serve
app is deleted, so the ingress answers nothing half-way; what is left (the Serve controller and proxy, the
raylets) ends with Ray itself.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time

APP_NAME = "miner"


def stop_service(timeout_s: float = 30.0) -> list[str]:
    """Kill the coordinator (no restart) and delete the Serve app on the connected cluster; say what was done."""
    import ray
    from ray import serve

    from serve_app.config import COORDINATOR_NAME, NAMESPACE

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its INFO lines are no news to whoever asked for a stop
    done = []
    try:
        coordinator = ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
    except ValueError:
        coordinator = None
    if coordinator is not None:
        ray.kill(coordinator, no_restart=True)
        # wait until it is really gone, so the app's replica cannot reach a half-dead coordinator
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.1)
        done.append("coordinator stopped (unfinished jobs resume from their last checkpoint on the next start)")
    with contextlib.suppress(Exception):  # no Serve running here: nothing to delete
        if APP_NAME in serve.status().applications:
            serve.delete(APP_NAME)
            done.append(f"Serve app '{APP_NAME}' deleted")
    return done


class Stop(KeyboardInterrupt):
    """SIGTERM or SIGHUP, turned into the same unwinding as Ctrl-C."""


def _raise_stop(signum: int, _frame) -> None:
    # one is enough: a service manager's second SIGTERM must not cut the shutdown it asked for short
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C. Call it again after ``ray.init``: Ray's core worker installs its own
    SIGTERM handler, which prints a stack dump and aborts (SIGABRT) instead of letting ``finally`` run."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.stop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="auto", help="Ray cluster to connect to (default: the one on this node)")
    args = parser.parse_args(argv)

    import ray

    from serve_app.config import NAMESPACE

    try:
        ray.init(address=args.address, namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False)
    except ConnectionError:
        print("no Ray cluster running here: nothing to stop")
        return 0
    try:
        for line in stop_service() or ["no miner service was running"]:
            print(line)
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
