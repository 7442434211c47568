"""Fixtures of the service's tests that talk to a worker directly."""

import pytest
import ray

from serve_app.worker import BacktestWorker


@pytest.fixture(scope="module")
def worker(service, request):
    """A BacktestWorker of the session's cluster outside any pool, one per test module: no CPU asked (the pool's
    workers hold them), labelled with the module's name."""
    handle = BacktestWorker.options(num_cpus=0).remote(request.module.__name__)
    yield handle
    ray.kill(handle)
