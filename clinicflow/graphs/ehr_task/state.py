"""State of the EHR task graph: what callers send, what the graph keeps, what it returns.

Values are plain dicts, lists and messages so that every checkpointer can store them.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, Required, TypedDict

from langgraph.managed import RemainingSteps

from clinicflow.graphs.channels import Conversation, Errors, Trace
from clinicflow.graphs.trace import TraceRecord

__all__ = [
    "InputState",
    "OutputState",
    "State",
    "Status",
    "TraceRecord",
    "WriteRecord",
    "WriteStatus",
]

Status = Literal["finished", "failed", "step_limit"]
WriteStatus = Literal["created", "existing", "invalid", "failed", "rejected", "bad_arguments"]


class WriteRecord(TypedDict):
    """The audit line of one write tool call: what was asked, who decided, what reached the server."""

    tool_call_id: str
    tool: str
    resource_type: str | None
    identifier: str | None
    status: WriteStatus
    reference: str | None
    decided_by: str | None
    reason: str | None
    errors: list[str]
    resource: dict[str, Any] | None
    at: str


class InputState(TypedDict, total=False):
    """What a caller sends: the instruction, its context, the current time and the patient in context."""

    instruction: Required[str]
    context: str
    now: str | None
    patient_id: str | None
    patient_label: str | None


class OutputState(TypedDict, total=False):
    """What a run returns."""

    instruction: Required[str]
    patient_id: str | None
    now: str | None
    run_id: str
    approval_policy: str
    answers: list[Any]
    summary: str
    status: Status
    writes: Annotated[list[WriteRecord], operator.add]
    trace: Trace
    errors: Errors
    steps: int


class State(InputState, OutputState, total=False):
    """Everything the graph keeps between nodes.

    `pending_writes` are prepared writes awaiting a decision, in call order; `approved` is the one write
    approved and not yet executed (with who approved it), so a resumed run executes it without asking again.
    `remaining_steps` is LangGraph's count of the supersteps left under the recursion limit.
    """

    messages: Conversation
    remaining_steps: RemainingSteps
    pending_writes: list[dict[str, Any]]
    approved: dict[str, Any] | None
    invalid_streak: int
    finished: bool
