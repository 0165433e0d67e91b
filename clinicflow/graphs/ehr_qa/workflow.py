"""The `ehr_qa` workflow's descriptor: its Input, its graph factory and how its state reads as a result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clinicflow.graphs.ehr_qa.graph import EhrQaGraph, build_ehr_qa_graph
from clinicflow.graphs.ehr_qa.result import EhrQaInputError, EhrQaRunError, ehr_qa_result
from clinicflow.graphs.inputs import PatientId
from clinicflow.graphs.workflow import RunErrors, Workflow, WorkflowDeps, check_patient_exists, jsonable

__all__ = ["EHR_QA", "EhrQaInput"]


class EhrQaInput(BaseModel):
    """Input of `ehr_qa`: one question about one patient."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"question": "What was the most recent HbA1c?", "patient_id": "example-patient"}]
        },
    )

    question: str = Field(min_length=1, max_length=4000, description="The question, in plain language.")
    patient_id: PatientId = Field(description="FHIR id of the patient in context.")


async def _build(deps: WorkflowDeps) -> EhrQaGraph:
    return build_ehr_qa_graph(
        await deps.model(),
        deps.record_tools(),
        checkpointer=deps.checkpointer,
        max_steps=deps.settings.max_steps,
    )


def _initial(data: BaseModel) -> dict[str, Any]:
    assert isinstance(data, EhrQaInput)
    return {"question": data.question.strip(), "patient_id": data.patient_id}


_RESULT_KEYS = ("question", "patient_id", "answer", "citations", "status", "evidence", "facts", "errors")


def _result(run_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    out = jsonable({k: values.get(k) for k in (*_RESULT_KEYS, "steps", "trace")})
    out["status"] = out["status"] or "failed"
    for key in ("citations", "evidence", "facts", "errors", "trace"):
        out[key] = out[key] or []
    return dict(out)


EHR_QA = Workflow(
    name="ehr_qa",
    description="Answer one question about one patient's FHIR record, citing the resources used.",
    input_model=EhrQaInput,
    build=_build,
    initial_state=_initial,
    result=_result,
    check=check_patient_exists,
    output=ehr_qa_result,
    errors=RunErrors(input=EhrQaInputError, run=EhrQaRunError),
    held=("question", "patient_id"),
    subject="question or patient",
)
"""EHR question answering: plan, retrieve, extract and answer with citations; reads only."""
