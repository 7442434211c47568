"""What deploy/start-head.sh prepares before Ray starts (python -m serve_app.head_setup), read through the same
settings the service reads, and the scripts' refusal of an address that is not this machine's. The whole start,
on a laptop of its own, is in test_two_laptops.py."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from serve_app.config import ServiceSettings
from serve_app.datasets import DatasetRegistry
from serve_app.head_setup import SHIPPED, app_settings, prepare
from tests.deploy import hosts

REPO = hosts.REPO
CONFIG = REPO / "deploy" / "config.yaml"


@pytest.fixture
def config(tmp_path, monkeypatch):
    """deploy/config.yaml with its ~ paths under a fresh HOME."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINER_TOKEN", raising=False)
    monkeypatch.delenv("MINER_ADMIN_TOKEN", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.read_text())
    return path


def test_both_tokens_are_created_once_readable_by_the_owner_only_and_the_service_reads_them(config, tmp_path):
    lines = prepare(config)
    settings = app_settings(config)
    token, admin = settings.path(settings.token_file), settings.path(settings.admin_token_file)
    assert token == tmp_path / "home" / ".miner" / "token" and admin.name == "admin_token"
    assert f"API token: {token}" in lines and f"admin token: {admin}" in lines  # start-head.sh prints where
    assert {oct(p.stat().st_mode & 0o777) for p in (token, admin)} == {"0o600"}
    first = token.read_text(), admin.read_text()
    assert first[0] != first[1] and all(len(t.strip()) >= 32 for t in first)
    # hex: never a leading "-" that a command line (`miner --token ...`) would take for a flag
    assert all(set(t.strip()) <= set("0123456789abcdef") for t in first)
    prepare(config)
    assert (token.read_text(), admin.read_text()) == first  # never replaced: clients keep working
    served = ServiceSettings.model_validate(yaml.safe_load(config.read_text())["applications"][0]["args"])
    assert (served.api_token, served.admin_api_token) == tuple(t.strip() for t in first)


def test_a_token_given_by_environment_is_not_written(config, monkeypatch):
    monkeypatch.setenv("MINER_TOKEN", "from-the-environment")
    lines = prepare(config)
    settings = app_settings(config)
    assert not settings.path(settings.token_file).exists() and "API token: given in $MINER_TOKEN" in lines
    assert settings.path(settings.admin_token_file).exists()


def test_the_shipped_dataset_is_linked_into_the_data_folder_and_the_service_offers_it(config, tmp_path):
    lines = prepare(config)
    settings = app_settings(config)
    data_dir = settings.path(settings.data_dir)
    assert (data_dir / SHIPPED.name).resolve() == SHIPPED.resolve()
    assert any("BTC-USD_FIVE_MINUTE" in line for line in lines)
    registry = DatasetRegistry(data_dir, tmp_path / "uploads", max_upload_bytes=1)
    btc = {d.name: d for d in registry.list()}["BTC-USD_FIVE_MINUTE"]
    assert btc.candles == 59_206 and btc.source == "data_dir"


def test_a_dataset_already_there_is_kept_and_no_data_links_nothing(config, tmp_path):
    settings = app_settings(config)
    data_dir = settings.path(settings.data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / "BTC-USD_FIVE_MINUTE.csv").write_text("mine\n")
    assert any("already there" in line for line in prepare(config))
    assert sorted(p.name for p in data_dir.iterdir()) == ["BTC-USD_FIVE_MINUTE.csv"]
    (data_dir / "BTC-USD_FIVE_MINUTE.csv").unlink()
    prepare(config, with_data=False)
    assert list(data_dir.iterdir()) == []


def test_the_deploy_config_names_only_settings_the_service_knows():
    args = yaml.safe_load(CONFIG.read_text())["applications"][0]["args"]
    ServiceSettings.model_validate({**args, "token": "t"})  # unknown keys are refused
    assert yaml.safe_load(CONFIG.read_text())["http_options"]["host"] == "127.0.0.1"  # never every network


@pytest.mark.parametrize("command", ["deploy/start-head.sh 192.0.2.77 1",
                                     "deploy/join-worker.sh 192.0.2.1 192.0.2.77 air 1"])
def test_the_scripts_refuse_an_address_that_is_not_this_machine_s(command, tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("token\n")
    env = {"PATH": f"{hosts.VENV_BIN}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    done = subprocess.run(command.split(), cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "192.0.2.77 is not an address of this machine" in done.stderr
