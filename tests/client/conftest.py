"""Client tests run against the real service of tests/serve_app (same session cluster)."""

from tests.serve_app.conftest import client, service  # noqa: F401  (shared session fixtures)
