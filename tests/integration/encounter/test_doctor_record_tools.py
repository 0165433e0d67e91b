"""The doctor-tools variant with the real patient-scoped FHIR tools on the embedded FHIR server."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, BaseMessage

from clinicflow.evals.agentclinic import SHIPPED_SCENARIOS, load_scenarios
from clinicflow.fhir import FhirClient
from clinicflow.graphs.encounter import EncounterCase, build_encounter_graph, run_encounter
from clinicflow.tools import make_fhir_tools
from tests.fakes import tool_call
from tests.unit.encounter.roles import prompt_text, role_models

pytestmark = pytest.mark.integration


async def test_doctor_reads_only_the_linked_patient_record(
    fhir_client: FhirClient, patient_ids: list[str]
) -> None:
    patient_id = patient_ids[0]
    base = load_scenarios(SHIPPED_SCENARIOS / "clinicflow_osce.jsonl").cases[0]
    case = EncounterCase(**{**base.__dict__, "patient_id": patient_id})
    replies = iter(
        [AIMessage(content="", tool_calls=[tool_call("record_manifest")]), AIMessage("Any fever?")]
    )

    def doctor(messages: list[BaseMessage]) -> AIMessage:
        return next(replies)

    models = role_models(doctor=doctor)
    graph = build_encounter_graph(
        models, protocol="clinicflow", max_turns=1, doctor_tools=make_fhir_tools(fhir_client)
    )
    outcome = await run_encounter(graph, case)

    tool_lines = [u for u in outcome.transcript if u["role"] == "tool"]
    assert len(tool_lines) == 1 and tool_lines[0]["tool"] == "record_manifest"
    assert f"[Patient/{patient_id}]" in tool_lines[0]["text"]
    assert tool_lines[0]["text"] in prompt_text(models.doctor.calls[1].messages)
    assert all(other not in tool_lines[0]["text"] for other in patient_ids[1:])
    assert outcome.turns == 1
