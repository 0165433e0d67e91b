"""Runs through the real server: create, events (order), result with provenance, idempotency, listing,
workflows, health, metrics, OpenAPI, and the audit rows each call leaves."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.provenance import Provenance

from tests.integration.api.conftest import ApiEnv

pytestmark = pytest.mark.integration

QUESTION = "What are the patient's most recent observations?"


def _ehr_qa(
    api: ApiEnv, who: str = "admin", patient: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return api.post_run(
        who, "ehr_qa", {"question": QUESTION, "patient_id": patient or api.patient_a}, headers
    )


def test_run_streams_events_in_order_and_ends_with_a_cited_answer(api: ApiEnv) -> None:
    created = _ehr_qa(api)
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["status"] == "queued" and run["workflow"] == "ehr_qa" and run["patient_id"] == api.patient_a

    events = api.events(run["id"])
    types = [e.type for e in events]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert types[:3] == ["run.queued", "run.started", "node.started"]
    assert types[-2:] == ["answer", "run.finished"] and events[-1].data["status"] == "completed"
    nodes = [e.data["node"] for e in events if e.type == "node.started"]
    assert nodes[0] == "plan" and nodes[-2:] == ["extract", "answer"] and "retrieve" in nodes
    started = {e.data["task_id"]: e.seq for e in events if e.type == "node.started"}
    finished = {e.data["task_id"]: e.seq for e in events if e.type == "node.finished"}
    assert started.keys() == finished.keys() and all(started[t] < finished[t] for t in started)
    calls = [e for e in events if e.type == "tool.call"]
    results = [e for e in events if e.type == "tool.result"]
    assert [c.data["tool"] for c in calls] == [r.data["tool"] for r in results]
    assert [c.data["tool"] for c in calls][:2] == ["record_manifest", "search_record"]
    assert all(c.seq < r.seq for c, r in zip(calls, results, strict=True))
    assert (
        "patient_id" not in calls[1].data["args"] and calls[1].data["args"]["resource_type"] == "Observation"
    )
    assert any(r.data["references"] for r in results)
    tokens = [e for e in events if e.type == "model.tokens"]
    assert [t.data["node"] for t in tokens] == ["plan", "plan", "extract", "answer"]
    assert all(t.data["input_tokens"] > 0 for t in tokens)

    done = httpx.get(f"{api.url}/v1/runs/{run['id']}", headers=api.headers("admin")).json()
    result = done["result"]
    assert done["status"] == "completed" and result["status"] == "answered"
    assert result["citations"] and set(result["citations"]) <= {
        c for e in result["evidence"] for c in e["citations"]
    }
    assert events[-2].data["answer"] == result["answer"]
    provenance = Provenance.model_validate(result["provenance"])
    assert [e.what.reference for e in provenance.entity] == result["citations"]
    assert provenance.target[0].identifier.value == run["id"]


def test_each_call_leaves_audit_rows_with_identity_patient_run_and_resources(api: ApiEnv) -> None:
    run = _ehr_qa(api, "reader_a").json()
    api.events(run["id"], "reader_a")
    httpx.get(f"{api.url}/v1/runs/{run['id']}", headers=api.headers("reader_a")).raise_for_status()

    rows = api.audit(run_id=run["id"])
    actions = [r["action"] for r in rows]
    assert actions[:2] == ["fhir.read", "run.create"]
    assert {"fhir.read", "fhir.operation", "fhir.search", "tool.call", "run.events", "run.read"} <= set(
        actions
    )
    assert {r["actor"] for r in rows} == {run["created_by"]} and run["created_by"].startswith("key:reader_a:")
    assert {r["patient_id"] for r in rows} == {api.patient_a}
    tools = [r for r in rows if r["action"] == "tool.call"]
    assert [t["detail"]["tool"] for t in tools][:2] == ["record_manifest", "search_record"]
    searches = [r for r in rows if r["action"] == "fhir.search"]
    assert searches and all(f"patient={api.patient_a}" in s["detail"]["query"] for s in searches)
    assert any(ref.startswith("Observation/") for s in searches for ref in s["resources"])

    bundle = httpx.get(
        f"{api.url}/v1/audit/fhir", params={"run_id": run["id"]}, headers=api.headers("auditor")
    )
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("application/fhir+json")
    parsed = Bundle.model_validate(bundle.json())
    events = [AuditEvent.model_validate(e.resource.model_dump()) for e in parsed.entry]
    assert len(events) == len(rows)
    read = next(e for e in events if e.subtype[0].code == "read")
    assert read.action == "R" and read.type.code == "rest"
    assert read.agent[0].who.identifier.value == run["created_by"]
    assert read.entity[0].what.reference == f"Patient/{api.patient_a}"


def test_idempotency_key_returns_the_same_run(api: ApiEnv) -> None:
    key = uuid.uuid4().hex
    first = _ehr_qa(api, headers={"Idempotency-Key": key})
    second = _ehr_qa(api, headers={"Idempotency-Key": key})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    api.events(first.json()["id"])
    assert len([r for r in api.audit(run_id=first.json()["id"]) if r["action"] == "run.create"]) == 1


def test_bad_requests_are_4xx_with_a_reason(api: ApiEnv) -> None:
    unknown = api.post_run("admin", "no_such_flow", {"question": "x", "patient_id": api.patient_a})
    assert unknown.status_code == 422 and "unknown workflow" in unknown.text
    invalid = api.post_run("admin", "ehr_qa", {"question": "", "patient_id": "bad id!"})
    assert invalid.status_code == 422 and {tuple(e["loc"][-1:]) for e in invalid.json()["detail"]} == {
        ("question",),
        ("patient_id",),
    }
    missing = api.post_run("admin", "ehr_qa", {"question": QUESTION, "patient_id": "no-such-patient"})
    assert missing.status_code == 404 and "not found on the FHIR server" in missing.text
    assert httpx.get(f"{api.url}/v1/runs/{'0' * 32}", headers=api.headers("admin")).status_code == 404
    assert httpx.get(f"{api.url}/v1/runs/not-a-run", headers=api.headers("admin")).status_code == 422


def test_list_workflows_health_metrics_and_openapi(api: ApiEnv) -> None:
    run = _ehr_qa(api, "reader_a").json()
    api.events(run["id"], "reader_a")
    listed = httpx.get(f"{api.url}/v1/runs", params={"limit": 200}, headers=api.headers("reader_a")).json()
    assert run["id"] in [r["id"] for r in listed["runs"]]
    assert {r["patient_id"] for r in listed["runs"]} == {api.patient_a}

    flows = httpx.get(f"{api.url}/v1/workflows", headers=api.headers("reader_a")).json()
    assert [f["name"] for f in flows] == ["ehr_qa"] and "question" in flows[0]["input_schema"]["properties"]
    everything = httpx.get(f"{api.url}/v1/workflows", headers=api.headers("admin")).json()
    assert {"ehr_qa", "write_probe"} <= {f["name"] for f in everything}

    health = httpx.get(f"{api.url}/health").json()
    assert health["status"] == "ok" and health["database"] == "ok" and health["workers"]["slots"] == 8

    assert api.metric("clinicflow_runs_created_total", workflow="ehr_qa") >= 1
    assert api.metric("clinicflow_runs_finished_total", workflow="ehr_qa", status="completed") >= 1
    assert api.metric("clinicflow_tool_calls_total", tool="search_record", outcome="success") >= 1
    assert api.metric("clinicflow_http_requests_total", method="POST", route="/v1/runs", status="201") >= 1

    spec = httpx.get(f"{api.url}/openapi.json").json()
    assert {
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/events",
        "/v1/runs/{run_id}/approval",
        "/v1/runs/{run_id}/cancel",
        "/health",
        "/metrics",
    } <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_event_stream_resumes_after_last_event_id(api: ApiEnv) -> None:
    run = _ehr_qa(api).json()
    events = api.events(run["id"])
    middle = events[len(events) // 2].seq
    with httpx.stream(
        "GET",
        f"{api.url}/v1/runs/{run['id']}/events",
        headers={**api.headers("admin"), "Last-Event-ID": str(middle)},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        ids = [int(line[4:]) for line in response.iter_lines() if line.startswith("id: ")]
    assert ids == [e.seq for e in events if e.seq > middle]


def test_encounter_workflow_runs_to_a_diagnosis(api: ApiEnv) -> None:
    case = {
        "case_id": "osce-1",
        "objective": "Evaluate the patient and give a diagnosis.",
        "patient_info": {"Demographics": "34-year-old woman", "Symptoms": {"Primary_Symptom": "headache"}},
        "exam_findings": {"Neurological": "normal"},
        "test_results": {"MRI": "normal"},
        "correct_diagnosis": "Migraine",
    }
    with api.client("admin") as cf:
        done = cf.run("encounter", case, timeout=60)
    result = done["result"]
    assert (
        done["status"] == "completed"
        and result["diagnosis"] == "Migraine"
        and result["finished"] == "diagnosis"
    )
    assert result["transcript"][0]["role"] == "doctor"
    assert (
        httpx.post(
            f"{api.url}/v1/runs",
            json={"workflow": "encounter", "input": case},
            headers=api.headers("reader_a"),
        ).status_code
        == 403
    )
