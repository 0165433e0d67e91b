"""What an EHR QA run reports: its typed result and its errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from clinicflow.agents.ehr_qa import Fact
from clinicflow.graphs.ehr_qa.state import Status
from clinicflow.graphs.runner import RunError, RunInputError, RunStoppedError
from clinicflow.graphs.trace import TraceEvent, render_trace

__all__ = ["EhrQaError", "EhrQaInputError", "EhrQaResult", "EhrQaRunError", "EvidenceLine", "ehr_qa_result"]


class EhrQaError(RunError):
    """Base of the errors a run reports; none of them needs a traceback to be understood."""


class EhrQaInputError(EhrQaError, RunInputError):
    """The question, patient id or thread id cannot start or continue a run."""


class EhrQaRunError(EhrQaError, RunStoppedError):
    """A run stopped on an exception; `resume_ehr_qa(graph, thread_id)` continues it once fixed."""

    label = "EHR QA"


class EvidenceLine(BaseModel):
    """One retrieved line, the citations it carries, and the tool that returned it."""

    text: str
    citations: list[str]
    tool: str


class EhrQaResult(BaseModel):
    """The answer, the evidence behind it and the trace of every call."""

    thread_id: str
    question: str
    patient_id: str
    answer: str
    citations: list[str] = Field(default_factory=list)
    status: Status
    evidence: list[EvidenceLine] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)
    trace: list[TraceEvent] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    steps: int = 0

    def render(self) -> str:
        """Plain text for a terminal: trace, evidence, then the answer."""
        out = render_trace(self.trace, kind_width=5, name_width=16)
        out.append("Evidence:")
        out += [f"  {line.text}" for line in self.evidence] or ["  (none)"]
        out.append(f"Answer: {self.answer}")
        out += [f"Error: {e}" for e in self.errors]
        return "\n".join(out)


def ehr_qa_result(thread_id: str, values: Mapping[str, Any], pending: Any = None) -> EhrQaResult:
    """The typed result of a run's state."""
    return EhrQaResult(
        thread_id=thread_id,
        question=values["question"],
        patient_id=values["patient_id"],
        answer=values.get("answer", ""),
        citations=values.get("citations", []),
        status=values.get("status", "failed"),
        evidence=[EvidenceLine.model_validate(e) for e in values.get("evidence", [])],
        facts=[Fact.model_validate(f) for f in values.get("facts", [])],
        trace=[TraceEvent.model_validate(e) for e in values.get("trace", [])],
        errors=values.get("errors", []),
        steps=values.get("steps", 0),
    )
