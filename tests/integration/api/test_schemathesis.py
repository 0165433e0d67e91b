"""Property-based requests generated from the server's own OpenAPI document (schemathesis): valid and
invalid input to every operation (and valid input without a token) never gets a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.integration.api.conftest import ApiEnv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = 8


def _fuzz(
    api: ApiEnv,
    operation: Any,
    strategy: Any,
    headers: dict[str, str],
    failures: list[str],
    counts: dict[str, int],
) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case: Any) -> None:
        if operation.path.endswith("/events"):
            case.query = {**(case.query or {}), "follow": "false"}
        response = case.call(base_url=api.url, headers=headers, timeout=30)
        counts["calls"] += 1
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
            )

    check()


def test_generated_requests_never_get_a_server_error(api: ApiEnv) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures: list[str] = []
    counts = {"calls": 0}
    admin = api.headers("admin")
    for operation in operations:
        for mode, headers in (
            (GenerationMode.POSITIVE, admin),
            (GenerationMode.NEGATIVE, admin),
            (GenerationMode.POSITIVE, {}),
        ):
            try:
                _fuzz(api, operation, operation.as_strategy(generation_mode=mode), headers, failures, counts)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, f"no valid input for {operation.label}"
    assert counts["calls"] >= 100
    assert not failures, "\n".join(failures[:10])
    assert api.server.proc is not None and api.server.proc.poll() is None
