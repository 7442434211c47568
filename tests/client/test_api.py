"""MinerClient against the real service: reconnection, errors, settings."""

from __future__ import annotations

import pytest

from client import MinerClient, ServiceUnreachable
from client.settings import ConfigError, resolve

from .proxy import CuttableProxy


def test_events_survive_dropped_connections_and_arrive_exactly_once(service, client):
    port = int(service.url.rsplit(":", 1)[1])
    proxy = CuttableProxy(port)
    try:
        job = client.submit(dataset="BTC-USD_FIVE_MINUTE", population=120, generations=8, seed=13)
        seen = []
        with MinerClient(f"http://127.0.0.1:{proxy.port}", service.token) as flaky:
            for event in flaky.events(job.id):
                seen.append(event)
                if event.type == "generation_best" and proxy.cuts < 3:
                    proxy.cut()  # mid-job, while the service keeps mining and logging
        assert proxy.cuts == 3
        assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
        assert seen[-1].type == "finished"
        assert [e.model_dump() for e in seen] == [e.model_dump() for e in client.events(job.id)]
    finally:
        proxy.close()


def test_an_unreachable_service_is_one_clear_error():
    with MinerClient("http://127.0.0.1:9", "t", reconnect_for_s=0.5) as nowhere:
        with pytest.raises(ServiceUnreachable, match=r"cannot reach the miner service at http://127\.0\.0\.1:9"):
            nowhere.jobs()
        with pytest.raises(ServiceUnreachable, match="event stream of job x lost"):
            list(nowhere.events("x"))


def test_settings_come_from_flags_then_environment_then_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MINER_HOME", str(tmp_path))
    monkeypatch.delenv("MINER_URL", raising=False)
    monkeypatch.delenv("MINER_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="no API token"):
        resolve()
    (tmp_path / "token").write_text("from-token-file\n")
    assert resolve().token == "from-token-file" and resolve().url == "http://127.0.0.1:8000"
    (tmp_path / "config.toml").write_text('url = "http://head:8000"\ntoken = "from-config"\n')
    assert (resolve().url, resolve().token) == ("http://head:8000", "from-config")
    monkeypatch.setenv("MINER_URL", "http://env:1")
    monkeypatch.setenv("MINER_TOKEN", "from-env")
    assert (resolve().url, resolve().token) == ("http://env:1", "from-env")
    assert (resolve("http://flag:2", "from-flag").url, resolve("http://flag:2", "from-flag").token) == (
        "http://flag:2", "from-flag")
    (tmp_path / "config.toml").write_text("url = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve()
