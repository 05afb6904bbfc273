"""The admin API against its own OpenAPI document, driven by schemathesis (issue 18, the standing suite).

schemathesis reads ``/admin/api/openapi.json`` from the app built in-process (with the admin
token) and, for every operation, sends bounded examples generated from the document: valid
bodies, parameters at their bounds, and values the document forbids. Every answer must be no
server error (no 500, plain-text or JSON) and must match what the document says of it: a
documented status, its content type, its schema. A small ``max_examples`` keeps the whole module
well under a minute; a failure prints the request to replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from conftest_helpers import make_settings
from gateway_fixtures import seed
from glasskey.admin import build_admin_app
from glasskey.services import build_services

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
EXAMPLES_PER_OPERATION = 5
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def admin_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenApiSchema]:
    services = build_services(make_settings(tmp_path_factory.mktemp("admin-fuzz")))
    seed(services)  # an org, wallets, routes and keys, so reads have something to read
    yield schemathesis.openapi.from_asgi("/openapi.json", build_admin_app(services))
    services.close()


def failures_of(operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode) -> list[str]:
    """What went wrong with ``operation`` over bounded examples of ``mode``: one line per failing example."""
    failures: list[str] = []

    @hypothesis.given(operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,  # the same examples every run: a failure is reproducible, CI is not a lottery
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def run(case: schemathesis.Case[Any]) -> None:
        try:
            case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, checks=CHECKS)
        except (AssertionError, FailureGroup) as failure:  # keep the first few of each operation
            if len(failures) < 3:
                failures.append(f"{operation.label} ({mode}): {str(failure)[:600]}")

    run()
    return failures


@pytest.mark.timeout(170)
def test_no_admin_answer_is_a_server_error_or_outside_its_schema(admin_schema: OpenApiSchema) -> None:
    failures: list[str] = []
    operations = []
    for result in admin_schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid for every operation
        operations.append(result.ok())
    assert len(operations) > 30  # the whole API, not an empty document
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += failures_of(operation, mode)
    assert not failures, "\n\n".join(failures)
