"""What the service refuses before anything is stored or run: ids that are path steps, text a store cannot
hold, oversized bodies and fields, malformed query values; how it answers unknown methods; and that failed
authentications are counted, with only a bounded sample written to the audit trail.

The app runs in process (Starlette's TestClient) over SQLite, a stub FHIR server and a scripted model."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinicflow.api.app import create_app
from clinicflow.api.auth import create_api_key
from clinicflow.api.config import ApiSettings
from tests.fakes import ScriptedChatModel

PATIENT = "p1"


class _Fhir(BaseHTTPRequestHandler):
    """A FHIR server holding one patient."""

    def do_GET(self) -> None:
        found = self.path.split("?")[0] == f"/Patient/{PATIENT}"
        body = {"resourceType": "Patient", "id": PATIENT} if found else {"resourceType": "OperationOutcome"}
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/fhir+json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fhir_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Fhir)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class Api:
    """A TestClient over the app, with an admin API key."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}

    def post_run(self, workflow: str, data: Any, **kwargs: Any) -> Any:
        return self.client.post(
            "/v1/runs", json={"workflow": workflow, "input": data}, headers=self.auth, **kwargs
        )

    def audit(self, action: str) -> list[dict[str, Any]]:
        response = self.client.get("/v1/audit", params={"action": action, "limit": 1000}, headers=self.auth)
        assert response.status_code == 200, response.text
        return list(response.json()["entries"])


@pytest.fixture
def api(tmp_path: Path, fhir_url: str) -> Iterator[Api]:
    database_url = f"sqlite:///{tmp_path}/api.sqlite"
    token = create_api_key(
        "admin", ["workflow:*", "write", "patient:*", "audit"], database_url=database_url
    ).token
    settings = ApiSettings(  # type: ignore[call-arg]
        cache_dir=tmp_path,
        database_url=database_url,
        checkpoint_db=tmp_path / "checkpoints.sqlite",
        fhir_url=fhir_url,
        fhir_retries=0,
        api_max_body_bytes=100_000,
        api_auth_audit_per_minute=3,
    )
    with TestClient(create_app(settings, model=ScriptedChatModel())) as client:
        yield Api(client, token)


QUESTION = "What was the most recent HbA1c?"


@pytest.mark.parametrize("patient_id", [".", ".."])
def test_a_patient_id_of_dots_alone_is_refused_with_a_422(api: Api, patient_id: str) -> None:
    response = api.post_run("ehr_qa", {"question": QUESTION, "patient_id": patient_id})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "input", "patient_id"]


@pytest.mark.parametrize(
    ("bad", "named"), [("\x00", "NUL character (U+0000)"), ("\ud800", "lone surrogate (U+D800)")]
)
def test_text_the_store_cannot_hold_is_refused_with_a_422_naming_it(api: Api, bad: str, named: str) -> None:
    body = json.dumps({"workflow": "ehr_qa", "input": {"question": f"What{bad}?", "patient_id": PATIENT}})
    response = api.client.post(
        "/v1/runs", content=body.encode(), headers=api.auth | {"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert f"input.question contains a {named} at position 4" in response.text
    assert api.client.get("/v1/runs", headers=api.auth).json()["runs"] == []


def test_a_body_over_the_limit_gets_a_413_and_stores_nothing(api: Api) -> None:
    response = api.post_run("ehr_qa", {"question": "x" * 120_000, "patient_id": PATIENT})
    assert response.status_code == 413
    assert "larger than 100000 bytes" in response.json()["detail"]
    assert api.client.get("/v1/runs", headers=api.auth).json()["runs"] == []


def test_a_streamed_body_over_the_limit_gets_a_413(api: Api) -> None:
    chunks = (b"x" * 10_000 for _ in range(12))  # no Content-Length: sent chunked
    response = api.client.post(
        "/v1/runs", content=chunks, headers=api.auth | {"Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_encounter_case_sections_are_typed_and_bounded(api: Api) -> None:
    case = {
        "case_id": "c1",
        "objective": "Find the diagnosis.",
        "patient_info": {"history": "headache"},
        "exam_findings": "normal",
        "test_results": {"MRI": "normal"},
        "correct_diagnosis": "Migraine",
    }
    too_big = api.post_run("encounter", case | {"patient_info": {"history": "h" * 40_000}})
    assert too_big.status_code == 422, too_big.text
    assert "at most 32000 are accepted" in too_big.text
    not_a_section = api.post_run("encounter", case | {"exam_findings": 42})
    assert not_a_section.status_code == 422


def test_an_approval_resource_is_bounded_and_the_edit_rule_is_in_the_schema(api: Api) -> None:
    run_id = "0" * 32
    response = api.client.post(
        f"/v1/runs/{run_id}/approval",
        json={"action": "edit", "resource": {"note": "n" * 120_000}},
        headers=api.auth,
    )
    assert response.status_code == 413
    response = api.client.post(
        f"/v1/runs/{run_id}/approval",
        json={"action": "edit", "resource": {"note": "n" * 64_500}},
        headers=api.auth,
    )
    assert response.status_code == 422
    assert "at most 64000 are accepted" in response.text
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]["ApprovalIn"]
    rules = {
        rule["if"]["properties"]["action"]["const"]: rule["then"]["required"] for rule in schema["allOf"]
    }
    assert rules == {"reject": ["reason"], "edit": ["resource"]}


def test_before_takes_only_an_iso_datetime(api: Api) -> None:
    assert api.client.get("/v1/runs", params={"before": "0.5"}, headers=api.auth).status_code == 422
    ok = api.client.get("/v1/runs", params={"before": "2030-01-01T00:00:00Z"}, headers=api.auth)
    assert ok.status_code == 200, ok.text


def test_an_unknown_method_gets_a_405_naming_every_method_of_the_path(api: Api) -> None:
    response = api.client.request("OPTIONS", "/v1/runs", headers=api.auth)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}
    response = api.client.delete("/v1/runs", headers=api.auth)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}


def test_a_body_that_is_not_json_gets_the_documented_400(api: Api) -> None:
    response = api.client.post(
        "/v1/runs", content=b"\xff\xfe not json", headers=api.auth | {"Content-Type": "application/json"}
    )
    documented = api.client.get("/openapi.json").json()["paths"]["/v1/runs"]["post"]["responses"]
    assert str(response.status_code) in documented, response.status_code


def test_the_example_patient_is_not_presented_as_a_real_one(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]["EhrQaInput"]
    assert schema["examples"][0]["patient_id"] == "example-patient"


def test_a_run_about_a_patient_the_fhir_server_lacks_gets_a_404(api: Api) -> None:
    response = api.post_run("ehr_qa", {"question": QUESTION, "patient_id": "example-patient"})
    assert response.status_code == 404, response.text
    assert "not found on the FHIR server" in response.json()["detail"]


def test_the_schema_gives_each_workflow_its_own_input(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]["RunCreate"]
    inputs = {v["properties"]["workflow"]["const"]: v["properties"]["input"]["$ref"] for v in schema["oneOf"]}
    assert inputs == {
        "ehr_qa": "#/components/schemas/EhrQaInput",
        "ehr_task": "#/components/schemas/EhrTaskInput",
        "encounter": "#/components/schemas/EncounterInput",
    }


def test_failed_authentications_are_counted_and_only_a_sample_is_audited(api: Api) -> None:
    for _ in range(20):
        assert api.client.get("/v1/runs", headers={"Authorization": "Bearer cfk_wrong"}).status_code == 401
    rows = api.audit("auth.failure")
    assert len(rows) == 3
    metrics = api.client.get("/metrics").text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("clinicflow_auth_failures_total{")
    )
    assert counted == 20
