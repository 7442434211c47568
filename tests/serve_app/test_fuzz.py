"""Property-based fuzzing of the live API from its own OpenAPI spec (schemathesis): valid and invalid
requests on every operation, with the right tokens, never get a 5xx."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.service_fixture import ADMIN_TOKEN

EXAMPLES_PER_OPERATION_AND_MODE = 50


def fuzz(service, operation, mode: GenerationMode, tried: dict, server_errors: list, accepted: list) -> None:
    """Send one operation's generated requests; count them and keep every 5xx."""
    token = ADMIN_TOKEN if operation.method.upper() == "PUT" else service.token  # reach the code, not the 403
    auth = {"Authorization": f"Bearer {token}"}

    @settings(max_examples=EXAMPLES_PER_OPERATION_AND_MODE, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode), real_dataset=st.booleans())
    def call(case, real_dataset):
        if real_dataset and case.path == "/v1/jobs" and case.method == "POST" and isinstance(case.body, dict):
            case.body["dataset"] = "synthetic"  # past the 404: random specs reach the GA and the queue
        response = case.call(base_url=service.url, headers=auth, timeout=60)
        tried[operation.label] = tried.get(operation.label, 0) + 1
        if response.status_code >= 500:
            server_errors.append(f"{case.as_curl_command()} -> {response.status_code} {response.text[:200]}")
        if response.status_code == 202 and case.path == "/v1/jobs":  # a valid job: it must not mine for hours
            accepted.append(response.json()["id"])
            httpx.delete(f"{service.url}/v1/jobs/{response.json()['id']}",
                         headers={"Authorization": f"Bearer {service.token}"})

    try:
        call()
    except Unsatisfiable:  # nothing to make invalid: an operation without parameters or body
        assert mode == GenerationMode.NEGATIVE, operation.label


@pytest.mark.slow
def test_no_request_generated_from_the_openapi_spec_gets_a_5xx(service):
    schema = schemathesis.openapi.from_dict(httpx.get(f"{service.url}/openapi.json").json())
    tried: dict[str, int] = {}
    server_errors: list[str] = []
    accepted: list[str] = []
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(service, result.ok(), mode, tried, server_errors, accepted)
    print(f"\nfuzzed {sum(tried.values())} requests ({len(accepted)} jobs accepted and cancelled): {tried}")
    assert len(tried) >= 10  # every operation was reached
    assert not server_errors, "\n".join(server_errors[:10])
    with service.client() as client:  # every accepted job ended when told to (a cancel may race its last batch)
        assert all(client.wait(job_id).status in ("cancelled", "finished") for job_id in accepted)
