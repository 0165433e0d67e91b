"""The `encounter` workflow's descriptor: its Input, its graph factory and how its state reads as a result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from clinicflow.graphs.encounter.graph import RoleModels, build_encounter_graph
from clinicflow.graphs.encounter.result import encounter_outcome
from clinicflow.graphs.encounter.state import EncounterCase
from clinicflow.graphs.inputs import PatientId, bounded_json
from clinicflow.graphs.workflow import Graph, Workflow, WorkflowDeps, jsonable

__all__ = ["CASE_SECTION_MAX_CHARS", "ENCOUNTER", "CaseSection", "EncounterInput"]

CASE_SECTION_MAX_CHARS = 32_000
CaseSection = Annotated[
    str | dict[str, JsonValue],
    bounded_json(CASE_SECTION_MAX_CHARS),
    Field(
        description=f"Text, or an object of findings; at most {CASE_SECTION_MAX_CHARS} characters as JSON."
    ),
]
"""One section of an encounter case (what one role knows): AgentClinic's objects or plain text."""


class EncounterInput(BaseModel):
    """Input of `encounter`: one case, split into what each role may see."""

    model_config = ConfigDict(extra="forbid")

    case_id: str = Field(min_length=1, max_length=200)
    objective: str = Field(min_length=1, max_length=4000, description="What the doctor is told.")
    patient_info: CaseSection = Field(description="What the patient actor knows (AgentClinic Patient_Actor).")
    exam_findings: CaseSection = Field(description="Physical examination findings, for the measurement role.")
    test_results: CaseSection = Field(description="Test results, for the measurement role.")
    correct_diagnosis: str = Field(min_length=1, max_length=1000, description="For the moderator only.")
    patient_id: PatientId | None = Field(None, description="FHIR patient, if any.")


async def _build(deps: WorkflowDeps) -> Graph:
    model = await deps.model()
    return build_encounter_graph(RoleModels(model, model, model, model), checkpointer=deps.checkpointer)


def _initial(data: BaseModel) -> dict[str, Any]:
    assert isinstance(data, EncounterInput)
    case = EncounterCase(**data.model_dump())
    return {"case": case, "patient_id": data.patient_id}


def _result(run_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("diagnosis", "verdict", "moderator_reply", "turn", "tests_requested", "finished", "transcript")
    out: dict[str, Any] = jsonable({k: values.get(k) for k in keys})
    out["correct"] = bool(out.pop("verdict"))
    out["turns"] = out.pop("turn") or 0
    return out


ENCOUNTER = Workflow(
    name="encounter",
    description="Simulate one patient encounter: the doctor asks, tests, and gives a diagnosis.",
    input_model=EncounterInput,
    build=_build,
    initial_state=_initial,
    result=_result,
    checkpoint_types=(("clinicflow.graphs.encounter.state", "EncounterCase"),),
    output=encounter_outcome,
)
"""Simulated patient encounters (AgentClinic): doctor, patient, measurement and moderator roles."""
