"""The published OpenAPI document, checked against the running service with schemathesis:
generated requests (valid and not) never get a 5xx, and every response matches the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from conftest import ADMIN_TOKEN, Served
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXAMPLES_PER_OPERATION = 40


@pytest.mark.slow
def test_every_operation_answers_within_its_schema_and_never_with_a_5xx(data_dir: Path, redis_server):
    env = {
        "LIVEBLOG_REDIS_URL": redis_server.url,
        "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEBLOG_WRITES_PER_TOKEN_PER_SECOND": "100000",
    }
    served = Served(data_dir, env)
    try:
        assert served.http.post("/api/v1/blogs", json={"id": "a", "title": "A"}, headers=ADMIN).status_code == 201
        schema = schemathesis.openapi.from_url(served.url + "/api/v1/openapi.json")
        checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 19

        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def answers_within_schema(case):
                response = case.call(base_url=served.url, headers=ADMIN, timeout=10)
                case.validate_response(response, checks=checks)

            answers_within_schema()
    finally:
        served.stop()
