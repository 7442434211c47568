"""What listens where. The service's HTTP port listens on its configured host only; on one machine, Ray itself (its
gRPC servers and the three Prometheus metrics exporters that Ray 2.60 otherwise opens on 0.0.0.0) stays on loopback
when the service says so first (``serve_app.loopback``). What Ray opens on a multi-node cluster is listed in
docs/reliability.md."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from tests.service_fixture import REPO


def listening(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket of these processes."""
    return [(c.laddr.ip, c.laddr.port, c.pid) for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in pids]


def test_the_service_port_listens_on_the_service_host_only(service):
    ours = {p.pid for p in psutil.Process().children(recursive=True)}
    on_port = {address for address, port, _ in listening(ours) if port == service.port}
    assert on_port == {"127.0.0.1"}  # the fixture's http_options host, never every interface
    wildcard = sorted({(port, " ".join(psutil.Process(pid).cmdline()[:1])[-40:])
                       for address, port, pid in listening(ours) if address in ("0.0.0.0", "::")})
    print(f"\nRay's own ports of this (multi-node, loopback) test cluster on every interface: {wildcard}")


PROBE = textwrap.dedent("""
    import json, time, psutil
    from serve_app.loopback import keep_ray_on_loopback
    assert keep_ray_on_loopback("127.0.0.1")
    import ray
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    metrics_port = ray.nodes()[0]["MetricsExportPort"]
    me, found, stable_since = psutil.Process(), [], time.monotonic()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # until the metrics exporter is open and nothing new opened for 5 s
        pids = {me.pid: "driver"}
        for child in me.children(recursive=True):
            try:
                pids[child.pid] = " ".join(child.cmdline())[:50].strip()
            except psutil.Error:
                pass
        now = sorted((c.laddr.ip, c.laddr.port, pids[c.pid]) for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.pid in pids)
        if now != found:
            found, stable_since = now, time.monotonic()
        if any(port == metrics_port for _, port, _ in found) and time.monotonic() - stable_since > 5:
            break
        time.sleep(0.5)
    print(json.dumps({"metrics_port": metrics_port, "listening": found}))
    ray.shutdown()
""")


@pytest.mark.slow
def test_a_one_machine_ray_opens_every_port_on_loopback_metrics_exporters_included():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    found = report["listening"]
    print(f"\n{len(found)} listening sockets: {sorted((a, p, n) for a, p, n in found)}")
    assert any(port == report["metrics_port"] for _, port, _ in found), "the metrics exporter never opened"
    assert len(found) >= 6  # GCS, raylet, agents, workers, exporters: all of them, not a lucky few
    outside = [(a, p, n) for a, p, n in found if not ipaddress.ip_address(a.removeprefix("::ffff:")).is_loopback]
    assert outside == []
