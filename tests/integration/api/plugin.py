"""Test workflows for the API tests (`CLINICFLOW_API_PLUGINS=tests.integration.api.plugin:register`).

`write_probe` proposes one Observation for the patient in context, waits for a person's decision
(LangGraph interrupt), then writes it through `FhirWriter` (idempotent by identifier). `hold_s` keeps the
run inside the write step after a new write, so a test can kill the server between the write and its
checkpoint; `pre_s` slows the step before the approval.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field

from clinicflow.api.workflows import PATIENT_ID_PATTERN, Workflow, WorkflowDeps, WorkflowRegistry, jsonable
from clinicflow.tools.write_tools import (
    Edit,
    FhirWriter,
    PreparedWrite,
    Reject,
    approval_request,
    finalize_resource,
    parse_decision,
    prepare_write,
)


class WriteProbeInput(BaseModel):
    """Input of `write_probe`."""

    model_config = ConfigDict(extra="forbid")

    patient_id: str = Field(pattern=PATIENT_ID_PATTERN)
    value: str = Field("118/77 mmHg", max_length=100)
    pre_s: float = Field(0.0, ge=0, le=30)
    hold_s: float = Field(0.0, ge=0, le=30)


class ProbeState(TypedDict, total=False):
    patient_id: str
    value: str
    pre_s: float
    hold_s: float
    write: dict[str, Any]
    decision: dict[str, Any]
    outcome: dict[str, Any]


def _build(deps: WorkflowDeps) -> Pregel:
    writer = FhirWriter(deps.require_fhir())

    async def propose(state: ProbeState, config: RunnableConfig) -> dict[str, Any]:
        await asyncio.sleep(state.get("pre_s", 0.0))
        write = prepare_write(
            "create_observation",
            {"code_text": "BP", "value_string": state["value"]},
            patient_id=state["patient_id"],
            run_id=config["configurable"]["thread_id"],
            step=1,
        )
        return {"write": write.model_dump()}

    async def review(state: ProbeState) -> dict[str, Any]:
        write = PreparedWrite.model_validate(state["write"])
        decision = parse_decision(interrupt(approval_request(write)))
        if isinstance(decision, Reject):
            return {
                "decision": decision.model_dump(),
                "outcome": {"status": "rejected", "reason": decision.reason},
            }
        if isinstance(decision, Edit):
            resource, value, digest, notes = finalize_resource(
                decision.resource, patient_id=write.patient_id, run_id=write.run_id, step=write.step
            )
            write = write.model_copy(
                update={
                    "resource": resource,
                    "identifier_value": value,
                    "content_hash": digest,
                    "notes": notes,
                }
            )
        return {"decision": decision.model_dump(), "write": write.model_dump()}

    async def execute(state: ProbeState) -> dict[str, Any]:
        outcome = await writer.execute(PreparedWrite.model_validate(state["write"]))
        if outcome.status == "created":
            await asyncio.sleep(state.get("hold_s", 0.0))
        return {"outcome": outcome.model_dump(exclude={"resource"})}

    def after_review(state: ProbeState) -> str:
        return END if state.get("outcome") else "execute"

    builder = StateGraph(ProbeState)
    builder.add_node("propose", propose)
    builder.add_node("review", review)
    builder.add_node("execute", execute)
    builder.add_edge(START, "propose")
    builder.add_edge("propose", "review")
    builder.add_conditional_edges("review", after_review, ["execute", END])
    builder.add_edge("execute", END)
    return builder.compile(checkpointer=deps.checkpointer, name="write_probe")


async def _build_async(deps: WorkflowDeps) -> Pregel:
    return _build(deps)


def _result(run_id: str, values: Any) -> dict[str, Any]:
    out: dict[str, Any] = jsonable({k: values.get(k) for k in ("outcome", "decision")})
    out["identifier"] = (values.get("write") or {}).get("identifier_value")
    return out


def register(registry: WorkflowRegistry) -> None:
    """Add the test workflows."""
    registry.register(
        Workflow(
            name="write_probe",
            description="Test workflow: propose one Observation, wait for approval, write it once.",
            input_model=WriteProbeInput,
            build=_build_async,
            writes=True,
            result=_result,
        )
    )
