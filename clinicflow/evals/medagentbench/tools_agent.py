"""MedAgentBench through clinicflow's tool-calling EHR task graph (`--agent tools`).

The harness puts the patient the instruction names (by MRN) in context; the agent reads with
patient-scoped lookup tools, writes through the approval-gated write tools under the explicit
`auto_approve` eval policy (recorded in every run), and ends with `finish_task(answers)`. Accepted writes
become the trajectory's POSTs, so the same scoring rules apply as in the text protocol.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import InjectedState

from clinicflow.evals.medagentbench.rules import patient_mrn
from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.evals.medagentbench.trajectory import Post, Trajectory, TrajectoryStatus
from clinicflow.fhir import FhirClient, FhirError
from clinicflow.graphs.ehr_task import EhrTaskError, EhrTaskResult, build_ehr_task_graph, run_ehr_task
from clinicflow.tools.write_tools import ApprovalPolicy, FhirWriter

__all__ = ["APPROVAL_POLICY", "ToolsAgent", "make_lookup_tools"]

APPROVAL_POLICY: ApprovalPolicy = "auto_approve"
_MAX_LINES = 60
_NO_PATIENT = "Tool failed: no patient is in context"
_STATUS: dict[str, TrajectoryStatus] = {
    "finished": "completed",
    "failed": "invalid_action",
    "step_limit": "limit_reached",
}


def _name(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or []:
        parts = [*name.get("given", []), name.get("family", "")]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return "(no name)"


def _value_text(obs: dict[str, Any]) -> Any:
    quantity = obs.get("valueQuantity") or {}
    if quantity:
        return f"{quantity.get('value')} {quantity.get('unit', '')}".strip()
    return obs.get("valueString")


async def _find_patient(client: FhirClient, given: str, family: str, birthdate: str) -> str:
    found = await client.search("Patient").where(given=given, family=family, birthdate=birthdate).all(limit=5)
    if not found:
        return "Patient not found"
    return "\n".join(
        f"MRN {patient_mrn(p)}: {_name(p)}, born {p.get('birthDate')} [Patient/{p.get('id')}]" for p in found
    )


async def _patient_info(client: FhirClient, patient_id: str) -> str:
    patient = await client.read("Patient", patient_id)
    return (
        f"{_name(patient)}, MRN {patient_mrn(patient)}, born {patient.get('birthDate')}, "
        f"{patient.get('gender', 'sex unknown')} [Patient/{patient_id}]"
    )


async def _lab_results(client: FhirClient, code: str, patient_id: str) -> str:
    found = await client.search("Observation").where(patient=patient_id, code=code.strip()).all(limit=5000)
    rows = sorted(
        (o for o in found if o.get("effectiveDateTime")),
        key=lambda o: str(o["effectiveDateTime"]),
        reverse=True,
    )
    if not rows:
        return f"No results with code {code} (not found in the record)."
    lines = [f"{len(rows)} results with code {code}, newest first:"]
    lines += [
        f"{obs['effectiveDateTime']}  {_value_text(obs)}  [Observation/{obs.get('id')}]"
        for obs in rows[:_MAX_LINES]
    ]
    return "\n".join(lines)


async def _reported(read: Awaitable[str]) -> str:
    """The tool's text, or the FHIR server's error as the model is told it."""
    try:
        return await read
    except FhirError as exc:
        return f"Tool failed: FHIR server error: {exc}"


def make_lookup_tools(client: FhirClient) -> list[BaseTool]:
    """Read tools for the tasks: find a patient by name and birth date, demographics, and lab results."""

    async def find_patient(given: str, family: str, birthdate: str) -> str:
        """Find a patient by given name, family name and date of birth (YYYY-MM-DD); returns the MRN.

        Args:
            given: given (first) name(s).
            family: family (last) name.
            birthdate: date of birth, YYYY-MM-DD.
        """
        return await _reported(_find_patient(client, given, family, birthdate))

    async def patient_info(patient_id: Annotated[str | None, InjectedState("patient_id")]) -> str:
        """Demographics of the patient in context: name, MRN, date of birth, sex."""
        if not patient_id:
            return _NO_PATIENT
        return await _reported(_patient_info(client, patient_id))

    async def lab_results(code: str, patient_id: Annotated[str | None, InjectedState("patient_id")]) -> str:
        """All results of one lab code for the patient in context, newest first, with exact times.

        Args:
            code: the code the task names, e.g. MG, GLU, K, A1C.
        """
        if not patient_id:
            return _NO_PATIENT
        return await _reported(_lab_results(client, code, patient_id))

    return [
        StructuredTool.from_function(coroutine=find_patient, name="find_patient", parse_docstring=True),
        StructuredTool.from_function(coroutine=patient_info, name="patient_info"),
        StructuredTool.from_function(coroutine=lab_results, name="lab_results", parse_docstring=True),
    ]


class ToolsAgent:
    """Runs tasks through one compiled EHR task graph (auto-approve policy), a fresh thread per task."""

    name = "tools"

    def __init__(
        self, model: BaseChatModel, client: FhirClient, *, max_steps: int = 8, max_retries: int = 2
    ) -> None:
        self.client = client
        self.graph = build_ehr_task_graph(
            model,
            make_lookup_tools(client),
            FhirWriter(client),
            approval=APPROVAL_POLICY,
            max_steps=max_steps,
            max_retries=max_retries,
        )

    async def _patient(self, task: MabTask) -> tuple[str | None, str | None]:
        if not task.mentions_mrn():
            return None, None
        found = await self.client.search("Patient").where(identifier=task.eval_MRN).all(limit=1)
        if not found:
            return None, None
        return found[0]["id"], f"Patient/{found[0]['id']} (MRN {task.eval_MRN})"

    async def run(self, task: MabTask) -> Trajectory:
        """One task end to end; writes go to the server after the recorded auto-approval."""
        started = time.perf_counter()
        try:
            patient_id, label = await self._patient(task)
            result = await run_ehr_task(
                self.graph,
                task.instruction,
                context=task.context,
                now=task.now,
                patient_id=patient_id,
                patient_label=label,
                thread_id=f"medagentbench-{task.id}-{uuid.uuid4().hex[:8]}",
            )
        except (EhrTaskError, FhirError) as exc:
            return Trajectory(
                task_id=task.id,
                agent=self.name,
                status="error",
                error=str(exc),
                seconds=round(time.perf_counter() - started, 3),
            )
        return _trajectory(task, result, self.client.base_url, time.perf_counter() - started)


def _trajectory(task: MabTask, result: EhrTaskResult, base_url: str, seconds: float) -> Trajectory:
    posts = [
        Post(
            url=f"{base_url}/{w.resource_type or w.tool}",
            payload=w.resource,
            accepted=w.status in ("created", "existing"),
        )
        for w in result.writes
    ]
    history = [
        {
            "role": "agent" if e.kind == "model" else "user",
            "content": f"{e.kind} {e.name}: {e.summary} {e.error or ''}".strip(),
        }
        for e in result.trace
    ]
    status = _STATUS.get(result.status, "error")
    return Trajectory(
        task_id=task.id,
        agent=f"tools ({result.approval_policy})",
        status=status,
        result=json.dumps(result.answers) if status == "completed" else None,
        posts=posts,
        history=history,
        rounds=result.steps,
        error="; ".join(result.errors) or None,
        seconds=round(seconds, 3),
    )
