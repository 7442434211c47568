"""Property-based fuzzing of the live API from its own OpenAPI spec (schemathesis): valid and invalid
requests on every operation, with the right tokens, never get a 5xx."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.service_fixture import ADMIN_TOKEN

EXAMPLES_PER_OPERATION_AND_MODE = 50


def fuzz(service, operation, mode: GenerationMode, tried: dict, server_errors: list) -> None:
    """Send one operation's generated requests; count them and keep every 5xx."""
    token = ADMIN_TOKEN if operation.method.upper() == "PUT" else service.token  # reach the code, not the 403
    auth = {"Authorization": f"Bearer {token}"}

    @settings(max_examples=EXAMPLES_PER_OPERATION_AND_MODE, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        response = case.call(base_url=service.url, headers=auth, timeout=60)
        tried[operation.label] = tried.get(operation.label, 0) + 1
        if response.status_code >= 500:
            server_errors.append(f"{case.as_curl_command()} -> {response.status_code} {response.text[:200]}")
        if response.status_code == 202 and case.path == "/v1/jobs":  # a valid job: it must not mine for hours
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
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(service, result.ok(), mode, tried, server_errors)
    print(f"\nfuzzed {sum(tried.values())} requests: {tried}")
    assert len(tried) >= 10  # every operation was reached
    assert not server_errors, "\n".join(server_errors[:10])
