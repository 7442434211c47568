import pytest

from .fake_service import FakeService


@pytest.fixture
def fake(monkeypatch, tmp_path) -> FakeService:
    """The in-memory fake service, and the environment that points the CLI at it."""
    service = FakeService()
    monkeypatch.setenv("MINER_URL", service.url)
    monkeypatch.setenv("MINER_TOKEN", service.token)
    monkeypatch.setenv("MINER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("client.api.RECONNECT_DELAYS_S", (0.0,))
    return service
