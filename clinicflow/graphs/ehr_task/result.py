"""What an EHR task run reports: its typed result (with a write awaiting approval, if any) and its errors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from clinicflow.graphs.ehr_task.state import WriteStatus
from clinicflow.graphs.runner import RunError, RunInputError, RunStoppedError
from clinicflow.graphs.trace import TraceEvent, render_trace

__all__ = [
    "EhrTaskError",
    "EhrTaskInputError",
    "EhrTaskResult",
    "EhrTaskRunError",
    "RunStatus",
    "WriteLog",
    "ehr_task_result",
]

RunStatus = Literal["finished", "failed", "step_limit", "awaiting_approval"]


class EhrTaskError(RunError):
    """Base of the errors a task run reports; none of them needs a traceback to be understood."""


class EhrTaskInputError(EhrTaskError, RunInputError):
    """The instruction, patient, time, thread or decision cannot start or continue a run."""


class EhrTaskRunError(EhrTaskError, RunStoppedError):
    """A run stopped on an exception; `resume_ehr_task(graph, thread_id)` continues it once fixed."""

    label = "EHR task"


class WriteLog(BaseModel):
    """The audit line of one write: the resource, who decided, and what reached the server."""

    tool_call_id: str
    tool: str
    resource_type: str | None = None
    identifier: str | None = None
    status: WriteStatus
    reference: str | None = None
    decided_by: str | None = None
    reason: str | None = None
    errors: list[str] = Field(default_factory=list)
    resource: dict[str, Any] | None = None
    at: datetime


class EhrTaskResult(BaseModel):
    """A task run: its answers, the write audit, the trace, and a write awaiting approval if any."""

    thread_id: str
    run_id: str = ""
    instruction: str
    patient_id: str | None = None
    now: str | None = None
    approval_policy: str = "require"
    status: RunStatus
    answers: list[Any] = Field(default_factory=list)
    summary: str = ""
    pending_approval: dict[str, Any] | None = None
    writes: list[WriteLog] = Field(default_factory=list)
    trace: list[TraceEvent] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    steps: int = 0

    def render(self) -> str:
        """Plain text for a terminal: trace, writes, then the answers or the write awaiting approval."""
        out = render_trace(self.trace, kind_width=8, name_width=24)
        out.append("Writes:")
        out += [
            " ".join(
                p
                for p in (f"  {w.status:13}", w.resource_type or w.tool, w.reference, w.decided_by, w.reason)
                if p
            )
            for w in self.writes
        ] or ["  (none)"]
        if self.pending_approval is not None:
            out.append(f"Awaiting approval: {self.pending_approval.get('question')}")
        out.append(f"Answers: {self.answers}")
        out += [f"Error: {e}" for e in self.errors]
        return "\n".join(out)


def ehr_task_result(
    thread_id: str, values: Mapping[str, Any], pending: dict[str, Any] | None
) -> EhrTaskResult:
    """The typed result of a run's state; `pending` is the write awaiting approval, if any."""
    status: RunStatus = "awaiting_approval" if pending is not None else values.get("status") or "failed"
    return EhrTaskResult(
        thread_id=thread_id,
        run_id=values.get("run_id") or "",
        instruction=values["instruction"],
        patient_id=values.get("patient_id"),
        now=values.get("now"),
        approval_policy=values.get("approval_policy") or "require",
        status=status,
        answers=values.get("answers") or [],
        summary=values.get("summary") or "",
        pending_approval=pending,
        writes=[WriteLog.model_validate(w) for w in values.get("writes", [])],
        trace=[TraceEvent.model_validate(e) for e in values.get("trace", [])],
        errors=values.get("errors", []),
        steps=values.get("steps", 0),
    )
