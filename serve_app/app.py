"""Serve application builders: ``serve deploy deploy/config.yaml`` imports ``serve_app.app:build_app``.

``args`` in the config are validated into ``ServiceSettings`` before anything starts; the
deployment's ``user_config`` (``RuntimeConfig``) is applied live through ``MinerAPI.reconfigure``.

No ``from __future__ import annotations``: Serve reads ``build_app``'s annotation at run time to
validate ``args`` into ``ServiceSettings``; a string annotation would hand it a plain dict.
"""

from ray.serve import Application

from serve_app.api import MinerAPI
from serve_app.config import RuntimeConfig, ServiceSettings


def build_app(args: ServiceSettings) -> Application:
    return MinerAPI.bind(ServiceSettings.model_validate(args))


def build_app_with(args: ServiceSettings, runtime: RuntimeConfig) -> Application:
    """The same app with a given ``user_config``, for in-process starts (local runs and tests)."""
    return MinerAPI.options(user_config=runtime.model_dump(mode="json")).bind(args)
