"""The OpenAPI document is enough to talk to the service: a client generated from ``/openapi.json`` with
openapi-python-client gets the one error model back, parsed into its own class, for a 401, 404, 409 and 422.

A route that does not declare a status in the error model leaves the generated client nothing to parse it with
(``parsed`` is None), so these tests fail if a route's ``responses=errors(...)`` loses one.
"""

from __future__ import annotations

import importlib
import random
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

PACKAGE = "miner_openapi_client"  # the generated package's name: the folder it is written to
TINY = {"dataset": "synthetic", "population": 8, "generations": 1, "permutations": 0}
GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.fixture(scope="module")
def generated(service, tmp_path_factory):
    """The client generated from the running service's own /openapi.json, imported: its client classes, its
    error model and the typed functions of the job routes."""
    folder = tmp_path_factory.mktemp("generated")
    spec = folder / "openapi.json"
    spec.write_bytes(httpx.get(f"{service.url}/openapi.json", timeout=30).raise_for_status().content)
    config = folder / "config.yaml"
    config.write_text("post_hooks: []\n")  # no ruff over the generated code: it is imported, never linted
    done = subprocess.run([str(GENERATOR), "generate", "--path", str(spec), "--output-path", str(folder / PACKAGE),
                           "--meta", "none", "--config", str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(folder))
    try:
        def load(name: str):
            return importlib.import_module(f"{PACKAGE}.{name}")

        yield SimpleNamespace(
            client=load("client"), ErrorBody=load("models.error_body").ErrorBody,
            JobSpec=load("models.job_spec").JobSpec,
            jobs=load("api.jobs.jobs_v1_jobs_get"), job=load("api.jobs.job_v1_jobs_job_id_get"),
            submit=load("api.jobs.submit_v1_jobs_post"), cancel=load("api.jobs.cancel_v1_jobs_job_id_delete"))
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture
def api(service, generated):
    """The generated client with the service's token."""
    with generated.client.AuthenticatedClient(base_url=service.url, token=service.token, timeout=30) as client:
        yield client


def error_of(generated, response, status: int, code: str):
    """The answer's body as the generated error model, after checking its status and code."""
    assert response.status_code == status, response.content
    error = response.parsed
    assert isinstance(error, generated.ErrorBody), f"{status} not parsed into the error model: {error!r}"
    assert error.error == code and error.message, error
    return error


def test_a_wrong_token_is_401_in_the_error_model(service, generated):
    with generated.client.AuthenticatedClient(base_url=service.url, token="nope", timeout=30) as wrong:
        error = error_of(generated, generated.jobs.sync_detailed(client=wrong), 401, "unauthorized")
    assert "wrong token" in error.message


def test_an_unknown_job_is_404_in_the_error_model(generated, api):
    error = error_of(generated, generated.job.sync_detailed("no-such-job", client=api), 404, "not_found")
    assert "no-such-job" in error.message


def test_the_same_idempotency_key_with_another_body_is_409_in_the_error_model(service, generated, api):
    seed, key = random.randrange(10**12), uuid.uuid4().hex
    first = generated.submit.sync_detailed(client=api, body=generated.JobSpec.from_dict({**TINY, "seed": seed}),
                                           idempotency_key=key)
    assert first.status_code == 202, first.content
    job = first.parsed.id
    try:
        other = generated.submit.sync_detailed(
            client=api, body=generated.JobSpec.from_dict({**TINY, "seed": seed + 1}), idempotency_key=key)
        error = error_of(generated, other, 409, "conflict")
        assert job in error.message and "different request" in error.message
    finally:  # leave the session's service as it was: the job ends (cancelled, or finished before the cancel came)
        cancelled = generated.cancel.sync_detailed(job, client=api)
        assert cancelled.status_code in (202, 409), cancelled.content
        with service.client() as client:
            assert client.wait(job).status in ("cancelled", "finished")


def test_a_population_out_of_range_is_422_in_the_error_model_with_details(generated, api):
    answer = generated.submit.sync_detailed(client=api, body=generated.JobSpec.from_dict({**TINY, "population": 2}))
    error = error_of(generated, answer, 422, "invalid_request")
    assert "population" in error.message
    assert [detail["field"] for detail in error.details] == ["population"], error.details
    assert all(detail["message"] for detail in error.details)
