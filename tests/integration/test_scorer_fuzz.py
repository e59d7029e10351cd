"""Fuzz the scorer's published OpenAPI schema: no input makes it answer 5xx (schemathesis, over HTTP)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from scorer_support import API_KEY, insert_users, scorer_process

from serving.batch import score_all_users


@pytest.fixture(scope="module")
def scorer_url(engine, tmp_path_factory) -> Iterator[str]:
    """A scorer process with a few users that have features and recommendations."""
    with engine.begin() as conn:
        conn.exec_driver_sql("truncate app.users, features.user_features_latest, serving.recommendations cascade")
    insert_users(engine, [1, 2, 3])
    score_all_users("fuzz-1", datetime.now(UTC))
    log_path = tmp_path_factory.mktemp("fuzz") / "scorer.log"
    with scorer_process(log_path, FINCOACH_MODEL_NAME=f"test-none-{uuid.uuid4().hex[:8]}") as client:
        yield str(client.base_url)


@pytest.fixture(scope="module")
def scorer_schema(scorer_url):
    """The schema as the scorer publishes it."""
    assert httpx.get(f"{scorer_url}/openapi.json").status_code == 200
    return schemathesis.openapi.from_url(f"{scorer_url}/openapi.json")


def test_no_input_makes_the_scorer_fail(scorer_schema):
    operations = [result.ok() for result in scorer_schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {
        "GET /recommendations/{user_id}", "POST /score", "POST /feedback", "GET /healthz", "GET /readyz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            case.call_and_validate(headers={"X-API-Key": API_KEY},
                                   checks=[not_a_server_error, status_code_conformance, response_schema_conformance])

        call()
