"""`miner doctor`: what stands between this laptop and a working service, each problem with its fix.

Client side only (no Ray): the service's address, whether it answers, whether it takes the token, whether this
laptop's clock and code agree with the head's, and, per node the service knows, whether it is alive, has workers
and runs the head's Python, Ray and numba.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from client.models import ClusterInfo, NodeInfo
from schema.version import PACKAGE, package_version

MAX_CLOCK_SKEW_S = 5.0  # the Date header has 1 s resolution; job times and logs disagree visibly past a few seconds
MATCHED = ("python", "ray", "numba", PACKAGE, "engine")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def diagnose(url: str, token: str, timeout_s: float = 5.0) -> list[Check]:
    """Every check, in order; a check that fails stops the ones that depend on it."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        return [Check("address", False, f"{url!r} has no http:// or https://",
                      "give the full address, e.g. --url http://100.101.102.103:8000")]
    checks = [Check("address", True, url)]
    started = time.monotonic()
    try:
        health = httpx.get(f"{url}/healthz", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return [*checks, Check("service reachable", False, f"no answer from {url}: {exc or type(exc).__name__}",
                               "on the head: deploy/start-head.sh (or python -m serve_app.local); from this laptop: "
                               "is Tailscale up (tailscale ping <head>), and is the port right (8000)?")]
    took_ms = 1000 * (time.monotonic() - started)
    if health.status_code != 200:
        return [*checks, Check("service reachable", False, f"/healthz answered {health.status_code}",
                               "the service is starting or broken: see `serve status` on the head")]
    checks.append(Check("service reachable", True, f"answered in {took_ms:.0f} ms"))
    checks.append(_clock(health))
    try:
        answer = httpx.get(f"{url}/v1/cluster", headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return [*checks, Check("token accepted", False, f"no answer from {url}/v1/cluster: {exc}",
                               "retry; if it persists, look at the service log on the head")]
    if answer.status_code == 401:
        return [*checks, Check("token accepted", False, "the service refused this token",
                               "copy ~/.miner/token from the head to this laptop's ~/.miner/token "
                               "(or set MINER_TOKEN, or pass --token)")]
    if answer.status_code != 200:
        return [*checks, Check("token accepted", False, f"/v1/cluster answered {answer.status_code}: "
                                                        f"{answer.text[:200]}", "see the service log on the head")]
    checks.append(Check("token accepted", True, "yes"))
    cluster = ClusterInfo(**answer.json())
    checks += [_code(cluster), _coordinator_code(cluster)]
    checks.extend(_node(node, cluster.versions) for node in cluster.nodes)
    return checks


def _clock(response: httpx.Response) -> Check:
    date = response.headers.get("date")
    if not date:
        return Check("clock", True, "the service sent no Date header; not checked")
    skew = time.time() - parsedate_to_datetime(date).timestamp()
    if abs(skew) > MAX_CLOCK_SKEW_S:
        return Check("clock", False, f"this laptop's clock is {skew:+.0f} s off the head's",
                     "turn on network time (macOS: System Settings > General > Date & Time; Linux: "
                     "timedatectl set-ntp true)")
    return Check("clock", True, f"{skew:+.0f} s from the head's")


def _code(cluster: ClusterInfo) -> Check:
    mine, theirs = package_version(), cluster.versions.get(PACKAGE, "unknown")
    if mine != theirs:
        return Check("client version", False, f"this client is {PACKAGE} {mine}, the service {theirs}",
                     "install the head's version here: git pull, then pip install -e . in the same checkout")
    return Check("client version", True, f"{PACKAGE} {mine} on both")


def _coordinator_code(cluster: ClusterInfo) -> Check:
    running = cluster.versions.get("engine", "?")
    if cluster.checkout_engine is not None and cluster.checkout_engine != running:
        return Check("service code", False, f"the coordinator runs engine {running}, the head's checkout is now "
                                            f"{cluster.checkout_engine} (updated after the service started)",
                     "restart the service on the head: deploy/stop-head.sh, then deploy/start-head.sh")
    return Check("service code", True, f"engine {running}, as the head's checkout")


def _node(node: NodeInfo, head: dict[str, str]) -> Check:
    name = f"node {node.label or node.node_id[:8]} ({node.address})"
    if not node.alive:
        return Check(name, False, "Ray lists it as dead", "on that laptop: deploy/join-worker.sh --daemon keeps it "
                                                          "joined; check it is awake and on Tailscale")
    if node.versions is None:
        return Check(name, node.workers > 0 or node.cpus == 0, f"{node.cpus:g} CPUs, no worker ready yet",
                     "workers start within a minute of a node joining; if none does, run deploy/doctor.sh there")
    differ = [f"{key} {node.versions.get(key, '?')} (head {head.get(key, '?')})" for key in MATCHED
              if node.versions.get(key) != head.get(key)]
    if node.refused_workers and node.refused_reason:
        return Check(name, False, f"{node.refused_workers} workers get no work: each {node.refused_reason}",
                     node.refused_fix or "see the service log on the head")
    if differ:
        return Check(name, False, "differs from the head: " + ", ".join(differ),
                     "install the head's versions there (same Python, then pip install -e . from the same commit)")
    return Check(name, True, f"{node.workers} workers, {node.evaluations:,} genomes backtested, versions as the head")
