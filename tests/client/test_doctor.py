"""`miner doctor` and the per-node figures of GET /v1/cluster, against the real two-node test service."""

from __future__ import annotations

import re

import pytest

from client.cli import main
from client.doctor import _coordinator_code, _node, diagnose
from client.models import ClusterInfo, NodeInfo
from schema.errors import ExitCode
from tests.service_fixture import free_port


def test_doctor_is_all_green_on_the_working_cluster_and_names_each_node(service, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MINER_URL", service.url)
    monkeypatch.setenv("MINER_TOKEN", service.token)
    monkeypatch.setenv("MINER_HOME", str(tmp_path / "home"))
    assert main(["doctor"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "FAIL" not in out
    checks = diagnose(service.url, service.token)
    assert [c.name for c in checks[:6]] == ["address", "service reachable", "clock", "token accepted",
                                            "client version", "service code"]
    nodes = [c for c in checks if c.name.startswith("node ")]
    assert len(nodes) == len(service.client().cluster().nodes) >= 2
    assert all(c.ok and "versions as the head" in c.detail for c in nodes)


@pytest.mark.parametrize(("url", "token", "failing", "fix"), [
    ("localhost:8000", None, "address", r"http://"),
    (None, "not-the-token", "token accepted", r"~/.miner/token"),
    ("closed-port", None, "service reachable", r"start-head\.sh"),
])
def test_doctor_names_the_broken_part_and_its_fix(service, url, token, failing, fix):
    url = {None: service.url, "closed-port": f"http://127.0.0.1:{free_port()}"}.get(url, url)
    checks = diagnose(url, token or service.token, timeout_s=2.0)
    assert [c.name for c in checks if not c.ok] == [failing]
    assert re.search(fix, checks[-1].fix)


def test_doctor_exits_3_when_a_check_fails(service, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MINER_HOME", str(tmp_path / "home"))
    assert main(["--url", service.url, "--token", "wrong", "doctor"]) == ExitCode.SERVICE
    assert "FAIL" in capsys.readouterr().out


def test_a_node_on_other_versions_than_the_head_is_flagged_with_each_difference():
    head = {"python": "3.11.9", "ray": "2.40.0", "numba": "0.60.0", "strategy-miner": "0.1.0",
            "engine": "0123456789abcdef"}
    node = NodeInfo(node_id="abc123456789", address="100.64.0.2", label="air", cpus=10, alive=True, workers=10,
                    evaluations=0, versions={**head, "ray": "2.9.3", "numba": "0.59.1"})

    check = _node(node, head)
    assert not check.ok and "ray 2.9.3 (head 2.40.0)" in check.detail and "numba 0.59.1 (head 0.60.0)" in check.detail
    assert "pip install" in check.fix
    # a laptop whose checkout is behind the head's: same packages, other engine code (its workers are refused)
    behind = node.model_copy(update={"workers": 0, "refused_workers": 10,
                                     "refused_reason": "runs engine fedcba9876543210, the head 0123456789abcdef",
                                     "refused_fix": "update that laptop's checkout to the head's commit",
                                     "versions": {**head, "engine": "fedcba9876543210"}})
    check = _node(behind, head)
    assert not check.ok and "10 workers get no work: each runs engine fedcba9876543210" in check.detail
    assert "head's commit" in check.fix


def test_a_coordinator_running_older_code_than_the_heads_checkout_is_flagged_with_a_restart():
    versions = {"engine": "0123456789abcdef"}
    assert _coordinator_code(ClusterInfo(nodes=[], workers=1, pending_workers=0, versions=versions,
                                         checkout_engine="0123456789abcdef")).ok
    stale = _coordinator_code(ClusterInfo(nodes=[], workers=1, pending_workers=0, versions=versions,
                                          checkout_engine="fedcba9876543210"))
    assert not stale.ok and "runs engine 0123456789abcdef, the head's checkout is now fedcba9876543210" in stale.detail
    assert "stop-head.sh" in stale.fix


def test_cluster_counts_the_genomes_each_node_backtested(service):
    client = service.client()
    before = {n.node_id: n.evaluations for n in client.cluster().nodes}
    job = client.submit(dataset="synthetic", population=48, generations=3, seed=3, permutations=0)
    assert client.wait(job.id).status == "finished"
    after = client.cluster().nodes
    done = {n.node_id: n.evaluations - before.get(n.node_id, 0) for n in after}
    assert sum(done.values()) >= 48 * 3  # every genome once (a batch re-sent after a slow answer counts again)
    assert all(n.versions and n.versions["ray"] for n in after if n.workers)
    assert all(n.versions["engine"] == client.cluster().versions["engine"] for n in after if n.workers)
