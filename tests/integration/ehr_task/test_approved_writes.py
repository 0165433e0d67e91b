"""Approval-gated writes against the real embedded FHIR server: no write without approval, none twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clinicflow.fhir import FhirClient
from clinicflow.graphs.ehr_task import (
    EhrTaskRunError,
    build_ehr_task_graph,
    open_checkpointer,
    resume_ehr_task,
    run_ehr_task,
)
from clinicflow.tools.write_tools import CREATE_SERVICE_REQUEST, WRITE_IDENTIFIER_SYSTEM, FhirWriter
from tests.fakes import ScriptedChatModel, calls, tool_call

CONTEXT = "It's 2025-12-31T10:15:00+00:00 now. The LOINC code for ordering HbA1C lab is: 4548-4."
ORDER = {"code": "4548-4", "code_system": "loinc", "display": "Hemoglobin A1c"}


class KilledOnceClient(FhirClient):
    """A client whose first create dies like a killed process: before the POST, or after it completed."""

    def __init__(self, base_url: str, *, when: str) -> None:
        super().__init__(base_url)
        self.when = when
        self.creates = 0

    async def create(self, resource: Any, if_none_exist: Any = None) -> dict[str, Any]:
        self.creates += 1
        if self.creates == 1 and self.when == "before_post":
            raise RuntimeError("process killed right after approval, before the POST")
        stored = await super().create(resource, if_none_exist=if_none_exist)
        if self.creates == 1 and self.when == "after_post":
            raise RuntimeError(
                "process killed after the server stored the resource, before the result was saved"
            )
        return stored


async def _count(client: FhirClient, rtype: str, patient_id: str) -> int:
    return len(await client.search(rtype).where(patient=patient_id).all(limit=1000))


def _order_then_finish(**order: Any) -> ScriptedChatModel:
    return ScriptedChatModel(
        script=[
            calls(tool_call(CREATE_SERVICE_REQUEST, **(ORDER | order))),
            calls(tool_call("finish_task", answers=[])),
        ]
    )


async def test_the_embedded_server_honours_if_none_exist(
    fhir_client: FhirClient, patient_ids: list[str]
) -> None:
    resource = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_ids[0]}"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "identifier": [{"system": WRITE_IDENTIFIER_SYSTEM, "value": "if-none-exist-probe"}],
    }
    condition = f"identifier={WRITE_IDENTIFIER_SYSTEM}|if-none-exist-probe"
    first = await fhir_client.create(resource, if_none_exist=condition)
    second = await fhir_client.create(resource, if_none_exist=condition)
    assert first["id"] == second["id"]
    found = (
        await fhir_client.search("ServiceRequest")
        .token("identifier", WRITE_IDENTIFIER_SYSTEM, "if-none-exist-probe")
        .all()
    )
    assert len(found) == 1


async def test_a_write_never_reaches_the_server_without_approval(
    fhir_client: FhirClient, fhir_base_url: str, patient_ids: list[str], tmp_path: Path
) -> None:
    patient = patient_ids[0]
    before = await _count(fhir_client, "ServiceRequest", patient)
    async with open_checkpointer(tmp_path / "cp.sqlite") as saver:
        graph = build_ehr_task_graph(_order_then_finish(), [], FhirWriter(fhir_client), checkpointer=saver)
        waiting = await run_ehr_task(
            graph, "Order an HbA1c.", context=CONTEXT, patient_id=patient, thread_id="no-approval"
        )
        assert waiting.status == "awaiting_approval"
        assert await _count(fhir_client, "ServiceRequest", patient) == before
        rejected = await resume_ehr_task(
            graph, "no-approval", {"action": "reject", "reason": "not indicated"}
        )
    assert rejected.status == "finished"
    assert await _count(fhir_client, "ServiceRequest", patient) == before


@pytest.mark.parametrize("when", ["before_post", "after_post"])
async def test_killed_after_approval_and_resumed_creates_exactly_one(
    fhir_client: FhirClient, fhir_base_url: str, patient_ids: list[str], tmp_path: Path, when: str
) -> None:
    patient = patient_ids[1]
    before = await _count(fhir_client, "ServiceRequest", patient)
    checkpoints = tmp_path / "checkpoints.sqlite"
    thread = f"killed-{when}"
    note = f"resume test {when}"

    async with KilledOnceClient(fhir_base_url, when=when) as dying, open_checkpointer(checkpoints) as saver:
        graph = build_ehr_task_graph(_order_then_finish(note=note), [], FhirWriter(dying), checkpointer=saver)
        waiting = await run_ehr_task(
            graph, "Order an HbA1c.", context=CONTEXT, patient_id=patient, thread_id=thread
        )
        assert waiting.pending_approval is not None
        identifier = waiting.pending_approval["identifier"]["value"]
        with pytest.raises(EhrTaskRunError, match="process killed"):
            await resume_ehr_task(graph, thread, {"action": "approve"})
    stored_now = await _count(fhir_client, "ServiceRequest", patient)
    assert stored_now == before + (1 if when == "after_post" else 0)

    resumed_model = ScriptedChatModel(script=[calls(tool_call("finish_task", answers=[]))])
    async with FhirClient(fhir_base_url) as client, open_checkpointer(checkpoints) as saver:
        graph = build_ehr_task_graph(resumed_model, [], FhirWriter(client), checkpointer=saver)
        done = await resume_ehr_task(graph, thread)
    assert done.status == "finished"
    assert [w.status for w in done.writes] == ["existing" if when == "after_post" else "created"]
    assert await _count(fhir_client, "ServiceRequest", patient) == before + 1
    found = (
        await fhir_client.search("ServiceRequest")
        .token("identifier", WRITE_IDENTIFIER_SYSTEM, identifier)
        .all()
    )
    assert len(found) == 1
    assert found[0]["note"] == [{"text": note}]
    assert found[0]["subject"] == {"reference": f"Patient/{patient}"}


async def test_an_invalid_resource_in_an_approved_write_writes_nothing(
    fhir_client: FhirClient, patient_ids: list[str], tmp_path: Path
) -> None:
    patient = patient_ids[2]
    before = await _count(fhir_client, "ServiceRequest", patient)
    model = _order_then_finish()
    async with open_checkpointer(tmp_path / "cp.sqlite") as saver:
        graph = build_ehr_task_graph(model, [], FhirWriter(fhir_client), checkpointer=saver)
        waiting = await run_ehr_task(
            graph, "Order an HbA1c.", context=CONTEXT, patient_id=patient, thread_id="bad"
        )
        assert waiting.pending_approval is not None
        edited = {**waiting.pending_approval["resource"], "priority": ["stat"], "authoredOn": "last Tuesday"}
        done = await resume_ehr_task(graph, "bad", {"action": "edit", "resource": edited})
    assert done.writes[0].status == "invalid"
    errors = " ".join(done.writes[0].errors)
    assert "priority" in errors and "authoredOn" in errors
    told = [m.text for m in model.calls[1].messages if m.type == "tool"]
    assert any("invalid FHIR R4 ServiceRequest" in t and "authoredOn" in t for t in told)
    assert await _count(fhir_client, "ServiceRequest", patient) == before
