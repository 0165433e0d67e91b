"""HTTP statuses and OperationOutcomes map to the typed error hierarchy in one place."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from clinicflow.fhir import (
    FhirAuthError,
    FhirBadRequestError,
    FhirClient,
    FhirConflictError,
    FhirConnectionError,
    FhirError,
    FhirNotFoundError,
    FhirResponseError,
    FhirServerError,
    FhirTimeoutError,
)
from clinicflow.fhir.errors import error_from_response, error_from_transport, outcome_issues

URL = "http://fhir.test/fhir/Patient/p1"

EXPECTED: dict[int, type[FhirResponseError]] = {
    400: FhirBadRequestError,
    401: FhirAuthError,
    403: FhirAuthError,
    404: FhirNotFoundError,
    409: FhirConflictError,
    410: FhirNotFoundError,
    412: FhirConflictError,
    422: FhirBadRequestError,
    500: FhirServerError,
    503: FhirServerError,
}


def response(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", URL), **kwargs)


def outcome(*issues: Any) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


@pytest.mark.parametrize(("status", "cls"), EXPECTED.items())
def test_status_maps_to_class_with_outcome(status: int, cls: type[FhirResponseError]) -> None:
    oo = outcome({"severity": "error", "code": "processing", "diagnostics": f"reason {status}"})
    err = error_from_response(response(status, json=oo))
    assert type(err) is cls
    assert isinstance(err, FhirResponseError) and isinstance(err, FhirError)
    assert err.status == status and err.url == URL and err.method == "GET"
    assert err.outcome == oo
    assert err.issues == [f"reason {status}"]
    assert str(err).startswith(f"FHIR server returned {status} ")
    assert str(err).endswith(f"for GET {URL}: reason {status}")


@pytest.mark.parametrize(("status", "cls"), EXPECTED.items())
def test_status_maps_to_class_without_outcome(status: int, cls: type[FhirResponseError]) -> None:
    err = error_from_response(response(status))
    assert type(err) is cls
    assert err.outcome is None and err.issues == []
    phrase = httpx.codes.get_reason_phrase(status)
    assert str(err) == f"FHIR server returned {status} {phrase} for GET {URL}"


def test_unlisted_statuses_still_map() -> None:
    assert type(error_from_response(response(418))) is FhirResponseError
    assert type(error_from_response(response(599))) is FhirServerError


def test_plain_text_body_is_quoted_and_html_is_not() -> None:
    err = error_from_response(response(502, text="upstream   gateway\nfailed"))
    assert str(err).endswith(": upstream gateway failed")
    html = response(502, text="<html><body>Bad gateway</body></html>", headers={"content-type": "text/html"})
    assert "<html>" not in str(error_from_response(html))
    long = error_from_response(response(500, text="x" * 1000))
    assert len(str(long)) < 450 and str(long).endswith("...")


def test_non_outcome_json_body_is_not_taken_for_issues() -> None:
    err = error_from_response(response(400, json={"error": "bad"}))
    assert err.outcome is None and err.issues == []
    assert '{"error":"bad"}' in str(err)


def test_issue_text_falls_back_to_details_coding_and_code() -> None:
    oo = outcome(
        {"severity": "error", "code": "invalid", "details": {"text": "Name is required"}},
        {
            "severity": "error",
            "code": "invalid",
            "details": {"coding": [{"code": "MSG_X", "display": "Shown"}]},
        },
        {"severity": "error", "code": "not-found"},
        {"severity": "fatal", "code": "exception", "diagnostics": "boom"},
        {
            "severity": "error",
            "code": "structure",
            "diagnostics": "Field required",
            "expression": ["Obs.code"],
        },
        {"severity": "error", "code": "structure", "diagnostics": "Bad (Obs.x)", "expression": ["Obs.x"]},
        "not an issue",
    )
    assert outcome_issues(oo) == [
        "Name is required",
        "Shown",
        "not-found",
        "fatal: boom",
        "Field required (at Obs.code)",
        "Bad (Obs.x)",
    ]
    assert outcome_issues(None) == [] and outcome_issues({"resourceType": "OperationOutcome"}) == []


def test_post_method_is_named() -> None:
    r = httpx.Response(422, request=httpx.Request("POST", "http://fhir.test/fhir/Observation"))
    err = error_from_response(r)
    assert isinstance(err, FhirBadRequestError)
    assert "for POST http://fhir.test/fhir/Observation" in str(err)


def test_transport_errors_map_to_connection_and_timeout() -> None:
    request = httpx.Request("GET", URL)
    refused = error_from_transport(httpx.ConnectError("[Errno 111] Connection refused", request=request), "B")
    assert isinstance(refused, FhirConnectionError)
    assert str(refused) == "FHIR server at B is unreachable: connection refused"
    read = error_from_transport(httpx.ReadTimeout("timed out", request=request), "B", 2.0)
    assert isinstance(read, FhirTimeoutError)
    assert str(read) == f"FHIR server at B did not answer within 2 s (GET {URL})"
    connect = error_from_transport(httpx.ConnectTimeout("timed out", request=request), "B", 3.0)
    assert isinstance(connect, FhirConnectionError)
    assert str(connect) == "FHIR server at B is unreachable: no connection within 3 s"
    dropped = error_from_transport(httpx.RemoteProtocolError("Server disconnected", request=request), "B")
    assert str(dropped) == "FHIR server at B is unreachable: server disconnected"


def test_os_error_cause_gives_the_reason() -> None:
    request = httpx.Request("GET", URL)
    exc = httpx.ConnectError("All connection attempts failed", request=request)
    exc.__cause__ = ConnectionRefusedError(111, "Connection refused")
    err = error_from_transport(exc, "B")
    assert isinstance(err, FhirConnectionError) and err.reason == "connection refused"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422, 500, 503])
async def test_client_raises_the_mapped_error(status: int) -> None:
    oo = outcome({"severity": "error", "code": "processing", "diagnostics": "from the server"})
    transport = httpx.MockTransport(lambda r: httpx.Response(status, json=oo))
    async with FhirClient("http://fhir.test/fhir", transport=transport, retries=1, backoff=0) as c:
        with pytest.raises(EXPECTED[status]) as info:
            await c.read("Patient", "p1")
    assert info.value.status == status
    assert info.value.url == URL
    assert info.value.issues == ["from the server"]
