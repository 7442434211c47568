"""The checks of deploy/doctor.sh (serve_app.node_doctor), fed a described laptop: no Ray, no network, no namespaces.
The script itself, on two pretend laptops broken on purpose, is test_node_doctor.py."""

from __future__ import annotations

from pathlib import Path

from client.doctor import Check
from serve_app.node_doctor import (
    MAC_VARIABLE,
    Here,
    Raylet,
    TokenRefused,
    node_checks,
    report,
    route_to,
    versions,
)

HEAD, AIR = "100.64.0.1", "100.64.0.2"
NODE = Raylet("ab" * 28, AIR)


def laptop(tmp_path: Path, **changes) -> Here:
    """A worker laptop where everything is right: Linux, the Ray token in ~/.ray, Ray running as its own address,
    which is the one it reaches the head from."""
    (tmp_path / ".ray").mkdir(exist_ok=True)
    (tmp_path / ".ray" / "auth_token").write_text("secret\n")
    fields = {"head": HEAD, "system": "Linux", "environ": {}, "home": tmp_path, "addresses": ("127.0.0.1", AIR),
              "route": AIR, "ray_port_open": True, "raylet": NODE, **changes}
    return Here(**fields)


def head_sees(address: str = AIR, alive: bool = True):
    return lambda head: {NODE.node_id: (address, alive), "cd" * 28: (HEAD, True)}


def failed(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks if not check.ok}


def test_a_working_worker_passes_every_check(tmp_path):
    checks = node_checks(laptop(tmp_path), AIR, head_sees())
    assert [c.name for c in checks] == ["macOS multi-node", "Ray token", "head's Ray port 6379", "Ray on this laptop",
                                        "Ray address", "Ray token accepted", "seen by the head"]
    assert failed(checks) == {}


def test_a_given_address_that_is_not_this_laptops_names_the_right_one(tmp_path):
    checks = failed(node_checks(laptop(tmp_path, raylet=None), "100.64.0.9", head_sees()))
    assert list(checks) == ["Ray on this laptop", "given address"]
    assert checks["given address"].detail == f"100.64.0.9 is not an address of this laptop (it has 127.0.0.1, {AIR})"
    assert checks["given address"].fix.endswith(checks["Ray on this laptop"].fix)  # join, under the right one
    assert f"deploy/join-worker.sh --daemon {HEAD} {AIR}" in checks["Ray on this laptop"].fix
    # the right one given, beside Ray running under it: one check, of Ray's
    assert [c.name for c in node_checks(laptop(tmp_path), AIR, head_sees()) if "address" in c.name] == ["Ray address"]


def test_ray_on_another_own_address_than_the_one_toward_the_head_is_the_seed_failure(tmp_path):
    lan = "192.168.1.20"
    here = laptop(tmp_path, addresses=("127.0.0.1", AIR, lan), raylet=Raylet(NODE.node_id, lan))
    checks = failed(node_checks(here, None, head_sees(lan)))
    assert list(checks) == ["Ray address"]
    assert checks["Ray address"].detail.startswith(f"this laptop reaches the head from {AIR}, not {lan}")
    assert (f"This node has an IP address of {AIR}, but we cannot find a local Raylet with the same address"
            in checks["Ray address"].detail)
    assert f"ray stop, then deploy/join-worker.sh --daemon {HEAD} {AIR}" in checks["Ray address"].fix
    # the right address given does not hide Ray running under the wrong one
    assert list(failed(node_checks(here, AIR, head_sees(lan)))) == ["Ray address"]


def test_no_ray_here_names_the_join_command_with_the_address_toward_the_head(tmp_path):
    checks = failed(node_checks(laptop(tmp_path, raylet=None), None, head_sees()))
    assert list(checks) == ["Ray on this laptop"]  # no address to check; the head answers, with nothing to look up
    assert f"deploy/join-worker.sh --daemon {HEAD} {AIR}" in checks["Ray on this laptop"].fix


def test_on_the_head_the_fixes_are_the_head_scripts(tmp_path):
    here = laptop(tmp_path, addresses=("127.0.0.1", HEAD), route=HEAD, raylet=None)
    (tmp_path / ".ray" / "auth_token").unlink()
    checks = failed(node_checks(here))
    assert checks["Ray token"].fix.startswith("deploy/start-head.sh creates it")
    assert checks["Ray on this laptop"].fix == f"deploy/stop-head.sh, then deploy/start-head.sh {HEAD}"


def test_a_missing_ray_token_names_where_to_copy_it_from_and_skips_asking_the_head(tmp_path):
    here = laptop(tmp_path)
    (tmp_path / ".ray" / "auth_token").write_text("\n")

    def never(head):
        raise AssertionError("without a token, Ray's client aborts the process: the head must not be asked")

    checks = node_checks(here, AIR, never)
    assert list(failed(checks)) == ["Ray token"]
    assert f"scp {HEAD}:.ray/auth_token ~/.ray/auth_token" in failed(checks)["Ray token"].fix
    assert "Ray token accepted" not in [c.name for c in checks]
    assert failed(node_checks(laptop(tmp_path, environ={"RAY_AUTH_TOKEN": "secret"}), AIR, head_sees())) == {}


def test_a_token_the_head_refuses_and_a_node_it_dropped_each_name_their_fix(tmp_path):
    def refuses(head):
        raise TokenRefused("InvalidAuthToken")

    checks = failed(node_checks(laptop(tmp_path), AIR, refuses))
    assert list(checks) == ["Ray token accepted"] and "copy the head's ~/.ray/auth_token here again" in \
        checks["Ray token accepted"].fix
    dropped = failed(node_checks(laptop(tmp_path), AIR, head_sees(alive=False)))
    assert list(dropped) == ["seen by the head"] and "join-worker.sh --daemon rejoins by itself" in \
        dropped["seen by the head"].fix


def test_the_head_port_closed_names_start_head_and_skips_asking_the_head(tmp_path):
    checks = node_checks(laptop(tmp_path, ray_port_open=False), AIR, head_sees())
    assert list(failed(checks)) == ["head's Ray port 6379"]
    assert f"deploy/start-head.sh {HEAD}" in failed(checks)["head's Ray port 6379"].fix
    assert "seen by the head" not in [c.name for c in checks]


def test_the_macos_variable_is_checked_on_macos_only(tmp_path):
    assert failed(node_checks(laptop(tmp_path, system="Linux"), AIR, head_sees())) == {}
    mac = failed(node_checks(laptop(tmp_path, system="Darwin"), AIR, head_sees()))
    assert list(mac) == ["macOS multi-node"] and f"export {MAC_VARIABLE}=1" in mac["macOS multi-node"].fix
    assert failed(node_checks(laptop(tmp_path, system="Darwin", environ={MAC_VARIABLE: "1"}), AIR,
                              head_sees())) == {}


def test_versions_other_than_the_heads_are_each_named():
    head = {"python": "3.11.9", "ray": "2.60.0", "numba": "0.61.0", "strategy-miner": "0.1.0",
            "engine": "0123456789abcdef"}
    assert versions(head, head).ok
    check = versions({**head, "ray": "2.40.0", "strategy-miner": "0.0.9"}, head)
    assert not check.ok and check.detail == "this laptop runs ray 2.40.0 (head 2.60.0)"  # the package: diagnose's
    assert "pip install" in check.fix
    check = versions({**head, "engine": "fedcba9876543210"}, head)  # a checkout behind the head's
    assert not check.ok and check.detail == "this laptop runs engine fedcba9876543210 (head 0123456789abcdef)"
    assert "head's commit" in check.fix


def test_the_report_is_one_line_per_check_and_the_exit_code_says_whether_all_passed(capsys):
    assert report([Check("a", True, "fine")]) == 0
    assert report([Check("a", True, "fine"), Check("b", False, "broken", "mend it")]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ok", "a", "fine"]
    assert lines[-1].split() == ["FAIL", "b", "broken", "->", "fix:", "mend", "it"]


def test_the_route_toward_an_address_is_the_local_address_packets_leave_from():
    assert route_to("127.0.0.1") == "127.0.0.1"
