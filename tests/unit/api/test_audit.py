"""FHIR requests audited in context, rows exported as valid R4 AuditEvents, answers' Provenance."""

from __future__ import annotations

import httpx
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.provenance import Provenance

from clinicflow.api.audit import (
    AuditingTransport,
    AuditScope,
    audit_event,
    audit_scope,
    cited_references,
    provenance,
)
from clinicflow.api.store import AuditRow, NewAudit, utcnow
from clinicflow.fhir import FhirClient

BASE = "http://fhir.test/fhir"


def _fhir(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if request.method == "POST":
        return httpx.Response(
            201,
            json={"resourceType": "Observation", "id": "new1"},
            headers={"Location": f"{BASE}/Observation/new1/_history/1"},
        )
    if path.endswith("/Patient/p1"):
        return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": f"{BASE}/Observation/o{i}",
                "resource": {"resourceType": "Observation", "id": f"o{i}"},
            }
            for i in range(3)
        ],
    }
    return httpx.Response(200, json=bundle, headers={"Content-Type": "application/fhir+json"})


async def test_requests_inside_a_scope_are_audited_with_resources() -> None:
    rows: list[NewAudit] = []
    scope = AuditScope(
        actor="key:a:1", actor_kind="api_key", record=rows.append, run_id="r" * 32, patient_id="p1"
    )
    transport = AuditingTransport(httpx.MockTransport(_fhir), BASE)
    async with FhirClient(BASE, transport=transport, retries=0) as client:
        await client.read("Patient", "p1")
        with audit_scope(scope):
            await client.read("Patient", "p1")
            await client.search("Observation").where(patient="p1").page()
            await client.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    assert [r.action for r in rows] == ["fhir.read", "fhir.search", "fhir.create"]
    assert rows[0].resources == ["Patient/p1"]
    assert rows[1].resources == ["Observation/o0", "Observation/o1", "Observation/o2"]
    assert "patient=p1" in rows[1].detail["query"]
    assert rows[2].resources == ["Observation/new1"] and rows[2].detail["status"] == 201
    assert {r.actor for r in rows} == {"key:a:1"} and {r.patient_id for r in rows} == {"p1"}


def _row(action: str, outcome: str = "success", **detail: object) -> AuditRow:
    return AuditRow(
        id=7,
        at=utcnow(),
        actor="jwt:svc",
        actor_kind="jwt",
        action=action,
        outcome=outcome,
        run_id="a" * 32,
        patient_id="p1",
        workflow="ehr_qa",
        resources=["Patient/p1", "Observation/o1"],
        detail=dict(detail),
    )


def test_rows_export_as_valid_r4_audit_events() -> None:
    read = AuditEvent.model_validate(audit_event(_row("fhir.search", query="patient=p1")))
    assert (read.type.code, read.subtype[0].code, read.action, read.outcome) == (
        "rest",
        "search-type",
        "R",
        "0",
    )
    assert [e.what.reference for e in read.entity[:2]] == ["Patient/p1", "Observation/o1"]
    assert read.entity[-1].what.identifier.value == "a" * 32
    denied = AuditEvent.model_validate(audit_event(_row("access.denied", "denied", error="no scope")))
    assert (denied.type.code, denied.outcome, denied.outcomeDesc) == ("110100", "4", "no scope")
    created = audit_event(_row("fhir.create"))
    assert created["action"] == "C" and created["agent"][0]["who"]["identifier"]["value"] == "jwt:svc"


def test_provenance_lists_each_cited_resource_once() -> None:
    record = Provenance.model_validate(
        provenance("b" * 32, "ehr_qa", "key:a", ["Observation/o1", "Observation/o1", "Condition/c"])
    )
    assert [e.what.reference for e in record.entity] == ["Observation/o1", "Condition/c"]
    assert record.target[0].identifier.value == "b" * 32
    assert "entity" not in provenance("b" * 32, "ehr_qa", "key:a", [])


def test_cited_references() -> None:
    assert cited_references("A1c 7.9 % [Observation/abc] and [Condition/x-1]; Observation/abc") == [
        "Observation/abc",
        "Condition/x-1",
    ]
