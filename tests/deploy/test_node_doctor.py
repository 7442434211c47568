"""deploy/doctor.sh on two pretend laptops (tests/deploy/hosts.py: each its own network, mount and PID namespace
with its own address), beside `miner doctor` from the client's side (this test's namespace): each broken setup
reported with its fix, all green otherwise. One cluster, built once by the README's commands and broken on
purpose in this order: nothing (all green, on both laptops), a bad API token, a missing and a wrong Ray token, a
worker on a wrong address, the service down (last: it is not brought back). The checks themselves, on described
laptops, are test_node_doctor_checks.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from tests.deploy import hosts
from tests.deploy.test_two_laptops import TwoLaptops

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the first test also builds the two laptops


def doctor(on: hosts.Laptop, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = on.run(" ".join(["deploy/doctor.sh", *args]), env=env, check=False, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    print(done.stdout)
    return done.returncode, done.stdout


def rows(out: str) -> dict[str, str]:
    """Check name -> its line ("ok    name  what was found" or "FAIL  name  what was found  -> fix: ...")."""
    return {re.split(r"\s{2,}", line[6:])[0]: line for line in out.splitlines() if line.startswith(("ok  ", "FAIL"))}


def failures(out: str) -> dict[str, str]:
    return {name: line for name, line in rows(out).items() if line.startswith("FAIL")}


def miner_doctor(cluster: TwoLaptops, token: str) -> tuple[int, str]:
    """`miner doctor` from a third laptop (this test's namespace), wide enough for one row per line."""
    env = {"PATH": os.environ["PATH"], "HOME": str(cluster.net.folder / "client"), "LANG": "C.UTF-8",
           "COLUMNS": "400"}
    os.makedirs(env["HOME"], exist_ok=True)
    done = subprocess.run([str(hosts.VENV_BIN / "miner"), "--url", cluster.url, "--token", token, "doctor"],
                          capture_output=True, text=True, timeout=60, env=env)
    print(done.stdout, done.stderr)  # stderr: a usage error (exit 2) says why there alone
    return done.returncode, done.stdout


def miner_row(out: str, name: str) -> str:
    (row,) = [line for line in out.splitlines() if re.match(rf"\W*{re.escape(name)}\s", line)]
    return row


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The README's two laptops: start-head.sh on one, join-worker.sh on the other with both tokens copied over."""
    net = hosts.Network(tmp_path_factory.mktemp("laptops"))
    laptops = None
    try:
        started = time.monotonic()
        laptops = TwoLaptops(net)
        laptops.start_head()
        for token in (".ray/auth_token", ".miner/token"):
            target = laptops.air.home(token)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(laptops.head.home(token).read_bytes())
        laptops.air.run(f"deploy/join-worker.sh {laptops.head.ip} {laptops.air.ip} air 1", timeout=300)
        deadline = time.monotonic() + 180
        while not any(n["label"] == "air" and n["alive"] and n["versions"] for n in laptops.nodes()):
            assert time.monotonic() < deadline, f"no worker on the second laptop: {laptops.nodes_or_error()}"
            time.sleep(1)
        print(f"two laptops up in {time.monotonic() - started:.0f} s")
        yield laptops
    finally:
        (laptops or net).close()


@pytest.mark.parametrize("where", ["air", "head"])
def test_all_green_on_the_working_cluster(cluster, where):
    on = getattr(cluster, where)
    code, out = doctor(on, cluster.head.ip, on.ip)
    assert code == 0 and failures(out) == {}, out
    found = rows(out)
    assert f"{on.ip}: this laptop's own, and the one it reaches the head from" in found["Ray address"]
    assert {"Ray token", "Ray on this laptop", "seen by the head", "service reachable", "token accepted",
            "versions"} <= set(found)
    code, out = miner_doctor(cluster, cluster.token)
    assert code == 0 and "FAIL" not in out


def test_a_bad_api_token(cluster):
    code, out = doctor(cluster.air, cluster.head.ip, env={"MINER_TOKEN": "not-the-token"})
    assert code == 3 and list(failures(out)) == ["token accepted"]
    assert "copy ~/.miner/token from the head" in failures(out)["token accepted"]
    code, out = miner_doctor(cluster, "not-the-token")
    assert code == 3 and "FAIL" in miner_row(out, "token accepted")
    assert "copy ~/.miner/token from the head" in miner_row(out, "token accepted")


def test_a_missing_or_wrong_ray_token(cluster):
    token = cluster.air.home(".ray/auth_token")
    kept = token.read_bytes()
    try:
        token.unlink()
        code, out = doctor(cluster.air, cluster.head.ip)
        assert code == 3 and list(failures(out)) == ["Ray token"]
        assert f"scp {cluster.head.ip}:.ray/auth_token ~/.ray/auth_token" in failures(out)["Ray token"]
        token.write_text("0" * 32)
        code, out = doctor(cluster.air, cluster.head.ip)
        assert code == 3 and list(failures(out)) == ["Ray token accepted"]
        assert "copy the head's ~/.ray/auth_token here again" in failures(out)["Ray token accepted"]
    finally:
        token.write_bytes(kept)


def test_a_worker_on_a_wrong_address(cluster):
    head, air = cluster.head.ip, cluster.air.ip
    join = f"deploy/join-worker.sh --daemon {head} {air}"
    # an address that is not the laptop's at all (join-worker.sh refuses it, and a raylet given it dies)
    stranger = f"{cluster.net.prefix}.99"
    code, out = doctor(cluster.air, head, stranger)
    failed = failures(out)
    assert code == 3 and list(failed) == ["given address"]
    assert f"{stranger} is not an address of this laptop" in failed["given address"] and join in failed["given address"]

    # the seed's failure: Ray joined under another address of the laptop's own (a LAN address, say), not the one it
    # reaches the head from; join-worker.sh accepts it, as it is the laptop's
    other = "100.118.0.7"
    cluster.air.run(f"ray stop --force && ip addr add {other}/32 dev lo", env={"RAY_AUTH_MODE": "token"})
    cluster.air.run(f"deploy/join-worker.sh {head} {other} air 1", timeout=300)
    code, out = doctor(cluster.air, head, other)  # given too: the head may drop the node it cannot reach any moment
    failed = failures(out)
    line = failed.get("Ray address") or failed["given address"]  # both name the same address here
    assert code == 3 and join in line
    assert f"This node has an IP address of {air}, but we cannot find a local Raylet with the same address" in line
    # from the client's side: the node at that address never gets a worker (the head cannot reach it)
    code, out = miner_doctor(cluster, cluster.token)
    row = miner_row(out, f"node air ({other})")
    assert code == 3 and "FAIL" in row and re.search(r"deploy/doctor\.sh there|join-worker\.sh", row)


def test_the_service_down(cluster):
    cluster.head.run("serve shutdown -y", env={"RAY_AUTH_MODE": "token"}, timeout=120)
    code, out = doctor(cluster.head, cluster.head.ip)
    failed = failures(out)
    assert code == 3 and list(failed) == ["service reachable"]  # Ray on the head is fine
    assert "deploy/start-head.sh" in failed["service reachable"]
    code, out = miner_doctor(cluster, cluster.token)
    assert code == 3 and "deploy/start-head.sh" in miner_row(out, "service reachable")
