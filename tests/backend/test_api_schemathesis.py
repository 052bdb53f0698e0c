"""Property-based API testing: schemathesis generates requests for every operation of the live app's OpenAPI
schema and checks that none is answered 5xx and that every documented answer matches its response schema.

The app is the real one (migrated SQLite database, embedded broker), called with a real API token. Hypothesis
is derandomized, so the same cases run every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance
from service_testing import ADMIN_TOKEN, make_settings

#: Generated cases per operation and mode (about 20 operations: a few hundred cases, well under a minute).
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app on its own SQLite service, started (migrated) for the whole module."""
    from backend.main import create_app

    home: Path = tmp_path_factory.mktemp("schemathesis")
    with TestClient(create_app(make_settings(home))) as client:
        yield client


@pytest.fixture(scope="module")
def api_schema(live_app: TestClient) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", live_app.app)


def _operation_failures(
    operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, calls: list[int]
) -> list[str]:
    """Run the generated cases of one operation; the failures found (empty when it holds)."""
    failures: list[str] = []

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure as found
    )
    def run(case: schemathesis.Case) -> None:
        calls.append(1)
        try:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                checks=[not_a_server_error, response_schema_conformance],
            )
        except (Exception, FailureGroup) as exc:  # schemathesis' failures carry the curl command to replay them
            if len(failures) < 3:
                failures.append(f"{operation.label}: {exc}"[:2000])

    try:
        run()
    except Unsatisfiable:  # negative mode: an operation without parameters or body has nothing to break
        assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    return failures


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_server_error_and_documented_responses(
    api_schema: schemathesis.BaseSchema, mode: schemathesis.GenerationMode
) -> None:
    """Requests that fit the schema (positive) and requests that break it (negative): never a 5xx."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15  # every operation of the API is generated for, not a filtered subset
    calls: list[int] = []
    failures = [failure for operation in operations for failure in _operation_failures(operation, mode, calls)]
    assert not failures, "\n\n".join(failures)
    assert len(calls) >= 200, len(calls)  # a few hundred cases per mode
