"""The `ehr_task` workflow's descriptor: its Input, its graph factory and how its state reads as a result."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clinicflow.agents.ehr_task import current_time_from_context
from clinicflow.graphs.ehr_task.graph import EhrTaskGraph, build_ehr_task_graph
from clinicflow.graphs.ehr_task.result import EhrTaskInputError, EhrTaskRunError, ehr_task_result
from clinicflow.graphs.inputs import PatientId
from clinicflow.graphs.workflow import RunErrors, Workflow, WorkflowDeps, check_patient_exists, jsonable
from clinicflow.tools.write_tools import FhirWriter

__all__ = ["EHR_TASK", "EhrTaskInput"]


class EhrTaskInput(BaseModel):
    """Input of `ehr_task`: an instruction about the patient in context, which may lead to writes."""

    model_config = ConfigDict(extra="forbid")

    instruction: str = Field(min_length=1, max_length=4000, description="What to do, in plain language.")
    patient_id: PatientId = Field(description="FHIR id of the patient in context.")
    context: str = Field("", max_length=8000, description="Task context, e.g. codes and the current time.")
    now: str | None = Field(
        None, max_length=40, description="Current time, ISO 8601 (default: from context)."
    )
    patient_label: str | None = Field(
        None, max_length=200, description="How to name the patient to the model."
    )

    @field_validator("now")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is not None:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value


async def _build(deps: WorkflowDeps) -> EhrTaskGraph:
    client = deps.require_fhir()
    return build_ehr_task_graph(
        await deps.model(),
        deps.record_tools(),
        FhirWriter(client),
        approval="require",
        checkpointer=deps.checkpointer,
        max_steps=deps.settings.max_steps,
    )


def _initial(data: BaseModel) -> dict[str, Any]:
    assert isinstance(data, EhrTaskInput)
    now = (
        data.now or current_time_from_context(data.context) or datetime.now(UTC).isoformat(timespec="seconds")
    )
    return {
        "instruction": data.instruction.strip(),
        "context": data.context,
        "now": now,
        "patient_id": data.patient_id,
        "patient_label": data.patient_label,
    }


_RESULT_KEYS = ("instruction", "patient_id", "now", "status", "answers", "summary", "writes", "errors")


def _result(run_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = jsonable({k: values.get(k) for k in (*_RESULT_KEYS, "steps", "trace")})
    for key in ("answers", "writes", "errors", "trace"):
        out[key] = out[key] or []
    written = [w["reference"] for w in out["writes"] if w.get("reference")]
    out["answer"] = out.get("summary") or ""
    out["citations"] = list(dict.fromkeys([*_references(out["answer"]), *written]))
    return out


def _references(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"\[([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})\]", text or "")]


EHR_TASK = Workflow(
    name="ehr_task",
    description="Carry out an instruction on one patient's record; every write waits for approval.",
    input_model=EhrTaskInput,
    build=_build,
    writes=True,
    initial_state=_initial,
    result=_result,
    check=check_patient_exists,
    output=ehr_task_result,
    errors=RunErrors(input=EhrTaskInputError, run=EhrTaskRunError),
    held=("instruction", "patient_id"),
    subject="task or patient",
)
"""EHR tasks: query the record, then propose writes that each wait for a person's approval."""
