"""What Ray's own work around a call costs the pool, and what packing several islands' epochs into one call saves.

    .venv/bin/python bench/ray_calls.py [--epochs 96] [--epoch-ms 6] [--rounds 3]

Two single-CPU actors stand in for ``BacktestWorker``s and one async actor for the coordinator, on a local cluster of
this machine's cores: each actor runs ``--epochs`` epochs of ``--epoch-ms`` of busy CPU, one call after the other,
``k`` epochs a call, with an island's argument (46 KB) and answer (88 KB) per epoch, the sizes of a 1,000-genome job's
islands (``engine.islands.wire_bytes``). Run once with Ray's default inline size (100 KB: larger arguments and answers
go through the object store) and once with the service's (``serve_app.config.RAY_SYSTEM_CONFIG``), each in a child
process (a cluster's system config is fixed when it starts). Prints, per setting and ``k``, the median wall time
against the ideal (the epochs' CPU alone), and per epoch the caller's CPU and the workers' beyond the epoch itself
(Ray's work in them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from bench.table import print_table  # noqa: E402

ARGUMENT_BYTES, ANSWER_BYTES = 46_000, 88_000  # per epoch, a 1,000-genome job's island
PACKED = (1, 2, 4)


def measure(inline_bytes: int | None, epochs: int, epoch_ms: float, rounds: int) -> dict[int, list[tuple]]:
    """{k: [(wall s, caller CPU s, workers' CPU s) per round]} on a fresh local cluster."""
    import numpy as np
    import psutil
    import ray

    config = {} if inline_bytes is None else {"max_direct_call_object_size": inline_bytes}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False, _system_config=config)

    @ray.remote(num_cpus=1)
    class Worker:
        def run(self, arguments: list, k: int) -> list:
            started = time.thread_time()  # CPU, not wall: a worker the caller preempts still computes its epochs
            while time.thread_time() - started < k * epoch_ms / 1000:
                pass
            return [np.ones(ANSWER_BYTES // 8) for _ in range(k)]

        def pid(self) -> int:
            return os.getpid()

    @ray.remote(num_cpus=0)
    class Caller:
        async def run(self, workers: list, k: int) -> tuple[float, float]:
            argument = np.ones(ARGUMENT_BYTES // 8)
            me = psutil.Process()
            cpu, started = sum(me.cpu_times()[:2]), time.perf_counter()

            async def feed(worker):
                for _ in range(epochs // k):
                    await worker.run.remote([argument] * k, k)

            await asyncio.gather(*(feed(w) for w in workers))
            return time.perf_counter() - started, sum(me.cpu_times()[:2]) - cpu

    workers = [Worker.remote() for _ in range(2)]
    processes = [psutil.Process(pid) for pid in ray.get([w.pid.remote() for w in workers])]
    caller = Caller.remote()
    ray.get(caller.run.remote(workers, 1))  # warm
    found: dict[int, list[tuple]] = {k: [] for k in PACKED}
    for _ in range(rounds):
        for k in PACKED:
            before = sum(sum(p.cpu_times()[:2]) for p in processes)
            wall, cpu = ray.get(caller.run.remote(workers, k))
            found[k].append((wall, cpu, sum(sum(p.cpu_times()[:2]) for p in processes) - before))
    ray.shutdown()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=96, help="epochs per worker (a multiple of 4)")
    parser.add_argument("--epoch-ms", type=float, default=6.0, help="busy CPU per epoch (1,000 x 30 on 1/11: ~6-10)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one setting, printed as JSON
    args = parser.parse_args()
    if args.child is not None:
        inline = None if args.child == "default" else int(args.child)
        print(json.dumps(measure(inline, args.epochs, args.epoch_ms, args.rounds)))
        return

    from serve_app.config import INLINE_OBJECT_BYTES

    ideal = args.epochs * args.epoch_ms / 1000
    per_epoch = 2 * args.epochs  # both workers'
    rows = []
    for name, setting in (("Ray's default (100 KB)", "default"), ("the service's (1 MiB)", str(INLINE_OBJECT_BYTES))):
        child = subprocess.run([sys.executable, __file__, "--child", setting, "--epochs", str(args.epochs),
                                "--epoch-ms", str(args.epoch_ms), "--rounds", str(args.rounds)],
                               capture_output=True, text=True, check=True)
        found = json.loads(child.stdout.strip().splitlines()[-1])
        for k in PACKED:
            runs = found[str(k)]
            wall = statistics.median(r[0] for r in runs)
            caller = statistics.median(r[1] for r in runs) / per_epoch * 1000
            workers = statistics.median(r[2] for r in runs) / per_epoch * 1000 - args.epoch_ms
            rows.append((f"inline size {name}, {k} epoch(s) a call: wall (ideal {ideal:.3f} s) / efficiency",
                         f"{wall:.3f} s / {ideal / wall:.0%}"))
            rows.append((f"inline size {name}, {k} epoch(s) a call: CPU per epoch, caller / workers beyond the epoch",
                         f"{caller:.2f} / {workers:.2f} ms"))
    print_table(f"2 workers x {args.epochs} epochs of {args.epoch_ms:g} ms, {ARGUMENT_BYTES // 1000} KB out and "
                f"{ANSWER_BYTES // 1000} KB back per epoch, median of {args.rounds}; {os.cpu_count()} CPUs", rows)


if __name__ == "__main__":
    main()
