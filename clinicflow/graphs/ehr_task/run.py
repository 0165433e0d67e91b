"""Run the EHR task graph for one instruction, stop at writes awaiting approval, and resume with a decision.

A run is checkpointed per `thread_id`. When a write awaits approval the result has status
`awaiting_approval` and `pending_approval` holds the exact resource; `resume_ehr_task(graph, thread_id,
decision)` continues it. A run that stopped on an exception (after an approval, say) is continued by
`resume_ehr_task(graph, thread_id)` without a decision: approved writes are not asked for again, and the
write's identifier keeps it from being created twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from langchain_core.runnables import RunnableConfig

from clinicflow.agents.ehr_task import current_time_from_context
from clinicflow.graphs.checkpoints import open_checkpointer
from clinicflow.graphs.ehr_task.result import (
    EhrTaskError,
    EhrTaskInputError,
    EhrTaskResult,
    EhrTaskRunError,
    WriteLog,
)
from clinicflow.graphs.ehr_task.workflow import EHR_TASK
from clinicflow.graphs.runner import check_patient_id, check_text, resume_workflow, run_workflow
from clinicflow.graphs.workflow import Graph
from clinicflow.tools.write_tools import Approve, Edit, Reject

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


def _check_now(now: str | None) -> str:
    if now is None:
        return datetime.now(UTC).isoformat(timespec="seconds")
    try:
        datetime.fromisoformat(now.replace("Z", "+00:00"))
    except ValueError:
        raise EhrTaskInputError(f"not an ISO 8601 date-time: {now!r}") from None
    return now


async def run_ehr_task(
    graph: Graph,
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
    check_text(EhrTaskInputError, "instruction", instruction, required=True)
    for name, text in (("context", context), ("patient label", patient_label)):
        check_text(EhrTaskInputError, name, text)
    if patient_id is not None:
        check_patient_id(EhrTaskInputError, patient_id)
    payload = {
        "instruction": instruction,
        "context": context,
        "now": _check_now(now or current_time_from_context(context)),
        "patient_id": patient_id,
        "patient_label": patient_label,
    }
    result: EhrTaskResult = await run_workflow(EHR_TASK, graph, payload, thread_id=thread_id, config=config)
    return result


async def resume_ehr_task(
    graph: Graph,
    thread_id: str,
    decision: Approve | Reject | Edit | Mapping[str, Any] | str | None = None,
    *,
    config: RunnableConfig | None = None,
) -> EhrTaskResult:
    """Continue a run: with a decision when a write awaits approval, without one after a crash."""
    result: EhrTaskResult = await resume_workflow(EHR_TASK, graph, thread_id, decision, config=config)
    return result
