"""State of the EHR question-answering graph: what callers send, what the graph keeps, what it returns.

Values are plain dicts, lists and messages so that every checkpointer can store them.
"""

from __future__ import annotations

from typing import Annotated, Literal, Required, TypedDict

from langgraph.managed import RemainingSteps

from clinicflow.graphs.channels import Conversation, Errors, Trace
from clinicflow.graphs.trace import TraceRecord

__all__ = [
    "EvidenceRecord",
    "FactRecord",
    "InputState",
    "OutputState",
    "State",
    "Status",
    "TraceRecord",
    "merge_evidence",
]

Status = Literal["answered", "not_found", "unsupported", "failed"]
"""`unsupported`: the answer's claims say what the resources they cite do not (see `claims`)."""


class EvidenceRecord(TypedDict):
    """One retrieved line with the citations it carries and the tool that returned it."""

    text: str
    citations: list[str]
    tool: str


class FactRecord(TypedDict):
    """One fact kept by the extractor, with citations that are all in the evidence."""

    text: str
    citations: list[str]


def merge_evidence(left: list[EvidenceRecord], right: list[EvidenceRecord]) -> list[EvidenceRecord]:
    """Append new evidence lines, keeping the first copy of a repeated line."""
    seen = {e["text"] for e in left}
    merged = list(left)
    for item in right:
        if item["text"] not in seen:
            seen.add(item["text"])
            merged.append(item)
    return merged


class InputState(TypedDict):
    """What a caller sends: the question and the patient in context."""

    question: str
    patient_id: str


class OutputState(TypedDict, total=False):
    """What a run returns."""

    question: Required[str]
    patient_id: Required[str]
    answer: str
    citations: list[str]
    status: Status
    evidence: Annotated[list[EvidenceRecord], merge_evidence]
    facts: list[FactRecord]
    trace: Trace
    errors: Errors
    steps: int


class State(InputState, OutputState, total=False):
    """Everything the graph keeps between nodes; `messages` is the planner's tool-call conversation,
    `remaining_steps` LangGraph's count of the supersteps left under the recursion limit."""

    messages: Conversation
    remaining_steps: RemainingSteps
    invalid_streak: int
    retrieval_done: bool
