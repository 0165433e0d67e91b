"""`active_medications`: the patient's active medication list, each line citing its MedicationRequest."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict, Field

from clinicflow.graphs.inputs import PatientId
from clinicflow.graphs.workflow import Graph, Workflow, WorkflowDeps, check_patient_exists


class MedicationsInput(BaseModel):
    """Input of `active_medications`: the patient in context."""

    model_config = ConfigDict(extra="forbid")
    patient_id: PatientId = Field(description="FHIR id of the patient in context.")


class MedicationList(BaseModel):
    """One line per active medication, citing the MedicationRequest it rests on."""

    patient_id: str
    answer: str = ""
    citations: list[str] = Field(default_factory=list)


class State(TypedDict, total=False):
    patient_id: str
    answer: str
    citations: list[str]


async def _build(deps: WorkflowDeps) -> Graph:
    fhir = deps.require_fhir()

    async def read(state: State) -> dict[str, Any]:
        search = fhir.search("MedicationRequest").where(patient=state["patient_id"], status="active")
        lines, citations = [], []
        for request in await search.all():
            concept = request.get("medicationCodeableConcept") or {}
            name = concept.get("text") or next((c.get("display") for c in concept.get("coding", [])), "?")
            citations.append(f"MedicationRequest/{request['id']}")
            lines.append(f"{name} [{citations[-1]}]")
        answer = "; ".join(lines) or "no active medication found in the record"
        return {"answer": answer, "citations": citations}

    graph = StateGraph(State)
    graph.add_node("read", read)
    graph.add_edge(START, "read")
    graph.add_edge("read", END)
    return graph.compile(checkpointer=deps.checkpointer, name="active_medications")


ACTIVE_MEDICATIONS = Workflow(
    name="active_medications",
    description="List the patient's active medications, citing the MedicationRequest of each.",
    input_model=MedicationsInput,
    build=_build,
    check=check_patient_exists,
    output=lambda thread_id, values, pending: MedicationList.model_validate(values),
)
