"""Where the client finds the service: flags, then MINER_URL / MINER_TOKEN, then ~/.miner/config.toml.

    # ~/.miner/config.toml
    url = "http://100.64.0.1:8000"
    token = "paste the head's ~/.miner/token here"
    admin_token = "only to push evaluators: the head's ~/.miner/admin_token"

On the head itself nothing is needed: the token file the service wrote (~/.miner/token) is used.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import httpx
from pydantic import BaseModel, ValidationError

from client.errors import MinerClientError

DEFAULT_URL = "http://127.0.0.1:8000"


class ConfigError(MinerClientError):
    """No usable URL or token."""


class ClientSettings(BaseModel):
    url: str = DEFAULT_URL
    token: str
    admin_token: str | None = None


def config_dir() -> Path:
    return Path(os.environ.get("MINER_HOME", Path.home() / ".miner")).expanduser()


def resolve(url: str | None = None, token: str | None = None, admin_token: str | None = None) -> ClientSettings:
    folder = config_dir()
    config_file = folder / "config.toml"
    file_values: dict = {}
    if config_file.is_file():
        try:
            file_values = tomllib.loads(config_file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file} is not valid TOML: {exc}") from None
    token_file = folder / "token"
    token = (token or os.environ.get("MINER_TOKEN") or file_values.get("token")
             or (token_file.read_text().strip() if token_file.is_file() else None))
    if not token:
        raise ConfigError(f"no API token: pass --token, set MINER_TOKEN, or put token = \"...\" in {config_file} "
                          "(the token is the file token in the service's state folder on the head node: ~/.miner "
                          "unless it was started with --state-dir; MINER_HOME=that folder makes this client read it)")
    admin_file = folder / "admin_token"
    admin_token = (admin_token or os.environ.get("MINER_ADMIN_TOKEN") or file_values.get("admin_token")
                   or (admin_file.read_text().strip() if admin_file.is_file() else None))
    url, source = next((value, source) for value, source in (
        (url, "--url"), (os.environ.get("MINER_URL"), "MINER_URL"), (file_values.get("url"), f"url in {config_file}"),
        (DEFAULT_URL, "the default URL")) if value)
    _check_url(str(url), source)
    try:
        return ClientSettings(url=url, token=token, admin_token=admin_token)
    except ValidationError as exc:
        raise ConfigError(f"{config_file}: {exc.errors()[0]['msg']}") from None


def _check_url(url: str, source: str) -> None:
    """A URL the client can use: http or https, with a host (``source`` names where it came from)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{source} {url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{source} {url!r} is not a service URL: it must start with http:// or https:// and name "
                          "a host, e.g. http://100.64.0.1:8000")
