"""Run the EHR task graph for one instruction, stop at writes awaiting approval, and resume with a decision.

A run is checkpointed per `thread_id`. When a write awaits approval the result has status
`awaiting_approval` and `pending_approval` holds the exact resource; `resume_ehr_task(graph, thread_id,
decision)` continues it. A run that stopped on an exception (after an approval, say) is continued by
`resume_ehr_task(graph, thread_id)` without a decision: approved writes are not asked for again, and the
write's identifier keeps it from being created twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import Command
from pydantic import BaseModel, Field

from clinicflow.agents.ehr_task import current_time_from_context
from clinicflow.fhir import FHIR_ID
from clinicflow.graphs.checkpoints import has_checkpointer as _has_checkpointer
from clinicflow.graphs.checkpoints import open_checkpointer
from clinicflow.graphs.checkpoints import thread_config as _run_config
from clinicflow.graphs.text import unstorable_character
from clinicflow.graphs.trace import TraceEvent
from clinicflow.tools.write_tools import APPROVAL_REQUEST_KIND, Approve, Edit, Reject, parse_decision

__all__ = [
    "EhrTaskError",
    "EhrTaskInputError",
    "EhrTaskResult",
    "EhrTaskRunError",
    "WriteLog",
    "open_checkpointer",
    "resume_ehr_task",
    "run_ehr_task",
]


RunStatus = Literal["finished", "failed", "step_limit", "awaiting_approval"]


class EhrTaskError(Exception):
    """Base of the errors a task run reports; none of them needs a traceback to be understood."""


class EhrTaskInputError(EhrTaskError, ValueError):
    """The instruction, patient, time, thread or decision cannot start or continue a run."""


class EhrTaskRunError(EhrTaskError):
    """A run stopped on an exception; `resume_ehr_task(graph, thread_id)` continues it once fixed."""

    def __init__(self, thread_id: str, cause: BaseException) -> None:
        super().__init__(f"EHR task run {thread_id} stopped: {type(cause).__name__}: {cause}")
        self.thread_id = thread_id
        self.cause = cause


class WriteLog(BaseModel):
    """The audit line of one write: the resource, who decided, and what reached the server."""

    tool_call_id: str
    tool: str
    resource_type: str | None = None
    identifier: str | None = None
    status: Literal["created", "existing", "invalid", "failed", "rejected", "bad_arguments"]
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
        out = ["Trace:"]
        for e in self.trace:
            tokens = f" in={e.tokens_in} out={e.tokens_out}" if e.tokens_in is not None else ""
            detail = " ".join(p for p in (e.summary, f"ERROR {e.error}" if e.error else "") if p)
            out.append(f"  {e.kind:8} {e.name:24} {e.duration_ms:9.1f} ms{tokens}  {detail}")
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


def _pending(interrupts: Any) -> dict[str, Any] | None:
    for item in interrupts or ():
        value = getattr(item, "value", None)
        if isinstance(value, Mapping) and value.get("kind") == APPROVAL_REQUEST_KIND:
            return dict(value)
    return None


def _result(thread_id: str, values: Mapping[str, Any], pending: dict[str, Any] | None) -> EhrTaskResult:
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


async def _invoke(graph: Pregel, payload: Any, config: RunnableConfig) -> EhrTaskResult:
    thread_id = config["configurable"]["thread_id"]
    try:
        values = await graph.ainvoke(payload, config)
    except EhrTaskError:
        raise
    except Exception as exc:
        raise EhrTaskRunError(thread_id, exc) from exc
    values = dict(values)
    pending = _pending(values.pop("__interrupt__", None))
    if _has_checkpointer(graph):
        snapshot = await graph.aget_state(config)
        values = {**snapshot.values, **values}
        pending = pending or _pending(snapshot.interrupts)
    return _result(thread_id, values, pending)


def _check_now(now: str | None) -> str:
    if now is None:
        return datetime.now(UTC).isoformat(timespec="seconds")
    try:
        datetime.fromisoformat(now.replace("Z", "+00:00"))
    except ValueError:
        raise EhrTaskInputError(f"not an ISO 8601 date-time: {now!r}") from None
    return now


async def run_ehr_task(
    graph: Pregel,
    instruction: str,
    *,
    context: str = "",
    now: str | None = None,
    patient_id: str | None = None,
    patient_label: str | None = None,
    thread_id: str | None = None,
    config: RunnableConfig | None = None,
) -> EhrTaskResult:
    """Carry out one instruction; stops with status `awaiting_approval` at a write that needs a decision.

    `now` defaults to the time the context states ("It's ... now"), else the current UTC time. With a
    known `thread_id` it continues or returns that run.
    """
    instruction = instruction.strip()
    if not instruction:
        raise EhrTaskInputError("the instruction is empty")
    for name, text in (("instruction", instruction), ("context", context), ("patient label", patient_label)):
        if text and (reason := unstorable_character(text)) is not None:
            raise EhrTaskInputError(f"the {name} {reason}; remove it")
    if patient_id is not None and not FHIR_ID.match(patient_id):
        raise EhrTaskInputError(f"not a FHIR patient id: {patient_id!r}")
    current = _check_now(now or current_time_from_context(context))
    thread_id = thread_id or uuid.uuid4().hex
    run_config = _run_config(config, thread_id)
    if _has_checkpointer(graph):
        snapshot = await graph.aget_state(run_config)
        if snapshot.values:
            held = (snapshot.values.get("instruction"), snapshot.values.get("patient_id"))
            if held != (instruction, patient_id):
                raise EhrTaskInputError(
                    f"thread {thread_id} holds another task or patient ({held[1]}: {held[0]!r}); "
                    "use a new thread id"
                )
            return await resume_ehr_task(graph, thread_id, config=config)
    payload = {
        "instruction": instruction,
        "context": context,
        "now": current,
        "patient_id": patient_id,
        "patient_label": patient_label,
    }
    return await _invoke(graph, payload, run_config)


async def resume_ehr_task(
    graph: Pregel,
    thread_id: str,
    decision: Approve | Reject | Edit | Mapping[str, Any] | str | None = None,
    *,
    config: RunnableConfig | None = None,
) -> EhrTaskResult:
    """Continue a run: with a decision when a write awaits approval, without one after a crash."""
    if not _has_checkpointer(graph):
        raise EhrTaskInputError("this graph has no checkpointer, so there is nothing to resume")
    run_config = _run_config(config, thread_id)
    snapshot = await graph.aget_state(run_config)
    if not snapshot.values:
        raise EhrTaskInputError(f"no checkpointed run under thread id {thread_id!r}")
    pending = _pending(snapshot.interrupts)
    if pending is not None:
        if decision is None:
            return _result(thread_id, snapshot.values, pending)
        try:
            parsed = parse_decision(decision)
        except ValueError as exc:
            raise EhrTaskInputError(str(exc)) from None
        return await _invoke(graph, Command(resume=parsed.model_dump(mode="json")), run_config)
    if decision is not None:
        raise EhrTaskInputError(f"thread {thread_id} has no write awaiting approval")
    if snapshot.next:
        return await _invoke(graph, None, run_config)
    return _result(thread_id, snapshot.values, None)
