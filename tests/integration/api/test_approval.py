"""Approval of writes through the real server (the `ehr_task` workflow and a small test workflow): approve,
reject, edit; one write on the FHIR server per approved run; decisions recorded once; cancel of running
and waiting runs."""

from __future__ import annotations

import time

import httpx
import pytest
from fhir.resources.R4B.provenance import Provenance

from clinicflow.tools.write_tools import WRITE_IDENTIFIER_SYSTEM
from tests.integration.api.conftest import ApiEnv

pytestmark = pytest.mark.integration


def _search(api: ApiEnv, resource_type: str, identifier: str) -> list[dict]:
    bundle = httpx.get(
        f"{api.fhir_url}/{resource_type}", params={"identifier": f"{WRITE_IDENTIFIER_SYSTEM}|{identifier}"}
    ).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _written(api: ApiEnv, identifier: str) -> list[dict]:
    return _search(api, "Observation", identifier)


def test_approve_writes_once_and_the_flow_is_audited(api: ApiEnv) -> None:
    with api.client("writer_a") as cf:
        run = cf.create_run("write_probe", {"patient_id": api.patient_a, "value": "121/79 mmHg"})
        waiting = cf.wait(run["id"], timeout=30)
        assert waiting["status"] == "waiting_approval"
        request = waiting["pending_approval"]["request"]
        assert request["kind"] == "fhir_write_approval" and request["patient_id"] == api.patient_a
        assert request["resource"]["subject"] == {"reference": f"Patient/{api.patient_a}"}
        assert _written(api, request["identifier"]["value"]) == []

        cf.approve(run["id"], "approve")
        again = httpx.post(
            f"{api.url}/v1/runs/{run['id']}/approval",
            json={"action": "approve"},
            headers=api.headers("writer_a"),
        )
        assert again.status_code == 409
        done = cf.wait(run["id"], timeout=30)
        events = list(cf.events(run["id"]))

    assert done["status"] == "completed" and done["result"]["outcome"]["status"] == "created"
    reference = done["result"]["outcome"]["reference"]
    written = _written(api, request["identifier"]["value"])
    assert [f"Observation/{r['id']}" for r in written] == [reference]
    assert written[0]["valueString"] == "121/79 mmHg"
    types = [e.type for e in events]
    assert types.index("approval.required") < types.index("approval.decided") < types.index("run.finished")
    assert types.count("run.started") == 2 and types[-1] == "run.finished"

    rows = api.audit(run_id=run["id"])
    decision = next(r for r in rows if r["action"] == "approval.decide")
    assert decision["actor"].startswith("key:writer_a:") and decision["detail"]["action"] == "approve"
    create = next(r for r in rows if r["action"] == "fhir.create")
    assert reference in create["resources"] and create["patient_id"] == api.patient_a
    assert rows.index(decision) < rows.index(create)


def test_ehr_task_order_waits_for_approval_and_is_created_once(api: ApiEnv) -> None:
    task = {
        "instruction": "Order an HbA1c for the patient.",
        "patient_id": api.patient_a,
        "context": "It's 2025-12-31T10:15:00+00:00 now. The LOINC code for HbA1c is 4548-4.",
    }
    with api.client("writer_a") as cf:
        run = cf.create_run("ehr_task", task)
        waiting = cf.wait(run["id"], timeout=60)
        assert waiting["status"] == "waiting_approval", waiting["error"]
        request = waiting["pending_approval"]["request"]
        assert request["resource_type"] == "ServiceRequest" and request["patient_id"] == api.patient_a
        identifier = request["identifier"]["value"]
        assert _search(api, "ServiceRequest", identifier) == []
        cf.approve(run["id"])
        done = cf.wait(run["id"], timeout=60)
    assert done["status"] == "completed" and done["result"]["status"] == "finished", done["result"]
    writes = done["result"]["writes"]
    assert [w["status"] for w in writes] == ["created"] and writes[0]["identifier"].endswith(f"|{identifier}")
    stored = _search(api, "ServiceRequest", identifier)
    assert [f"ServiceRequest/{r['id']}" for r in stored] == [writes[0]["reference"]]
    assert done["result"]["citations"] == [writes[0]["reference"]]
    assert [e.what.reference for e in Provenance.model_validate(done["result"]["provenance"]).entity] == [
        writes[0]["reference"]
    ]
    creates = [r for r in api.audit(run_id=run["id"]) if r["action"] == "fhir.create"]
    assert len(creates) == 1 and writes[0]["reference"] in creates[0]["resources"]


def test_reject_writes_nothing_and_edit_writes_the_edited_resource(api: ApiEnv) -> None:
    with api.client("admin") as cf:
        rejected = cf.run(
            "write_probe",
            {"patient_id": api.patient_a},
            on_approval=lambda request: {"action": "reject", "reason": "wrong patient"},
            timeout=60,
        )
        assert rejected["result"]["outcome"] == {"status": "rejected", "reason": "wrong patient"}
        assert _written(api, rejected["result"]["identifier"]) == []

        def edit(request: dict) -> dict:
            return {"action": "edit", "resource": {**request["resource"], "valueString": "130/85 mmHg"}}

        edited = cf.run("write_probe", {"patient_id": api.patient_a}, on_approval=edit, timeout=60)
    assert edited["result"]["outcome"]["status"] == "created"
    written = _written(api, edited["result"]["identifier"])
    assert len(written) == 1 and written[0]["valueString"] == "130/85 mmHg"
    bad = httpx.post(
        f"{api.url}/v1/runs/{edited['id']}/approval", json={"action": "reject"}, headers=api.headers("admin")
    )
    assert bad.status_code == 422


def test_cancel_stops_a_running_run_within_one_step(api: ApiEnv) -> None:
    with api.client("admin") as cf:
        run = cf.create_run("write_probe", {"patient_id": api.patient_a, "pre_s": 20})
        for event in cf.events(run["id"]):
            if event.type == "node.started" and event.data["node"] == "propose":
                break
        t0 = time.monotonic()
        cancelled = cf.cancel(run["id"])
        assert cancelled["cancel_requested"] is True
        final = cf.wait(run["id"], timeout=10)
        elapsed = time.monotonic() - t0
        events = list(cf.events(run["id"]))
    assert final["status"] == "cancelled" and elapsed < 5
    assert events[-1].type == "run.finished" and events[-1].data["status"] == "cancelled"
    assert "approval.required" not in [e.type for e in events]
    assert (
        httpx.post(f"{api.url}/v1/runs/{run['id']}/cancel", headers=api.headers("admin")).status_code == 409
    )
    assert [r["action"] for r in api.audit(run_id=run["id"])].count("run.cancel") == 1


def test_cancel_while_waiting_for_approval_finishes_at_once(api: ApiEnv) -> None:
    with api.client("admin") as cf:
        run = cf.create_run("write_probe", {"patient_id": api.patient_a})
        assert cf.wait(run["id"], timeout=30)["status"] == "waiting_approval"
        assert cf.cancel(run["id"])["status"] == "cancelled"
        late = httpx.post(
            f"{api.url}/v1/runs/{run['id']}/approval",
            json={"action": "approve"},
            headers=api.headers("admin"),
        )
    assert late.status_code == 409
