"""Run the EHR question-answering graph for one question and return a typed, traced result.

A run is checkpointed per `thread_id` when the graph has a checkpointer: running again with the
same thread id continues an interrupted run from its last finished step.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from pydantic import BaseModel, Field

from clinicflow.agents.ehr_qa import Fact
from clinicflow.fhir import FHIR_ID
from clinicflow.graphs.checkpoints import has_checkpointer as _has_checkpointer
from clinicflow.graphs.checkpoints import open_checkpointer
from clinicflow.graphs.checkpoints import thread_config as _run_config
from clinicflow.graphs.ehr_qa.state import Status
from clinicflow.graphs.text import unstorable_character
from clinicflow.graphs.trace import TraceEvent

__all__ = [
    "EhrQaError",
    "EhrQaInputError",
    "EhrQaResult",
    "EhrQaRunError",
    "EvidenceLine",
    "open_checkpointer",
    "resume_ehr_qa",
    "run_ehr_qa",
]


class EhrQaError(Exception):
    """Base of the errors a run reports; none of them needs a traceback to be understood."""


class EhrQaInputError(EhrQaError, ValueError):
    """The question, patient id or thread id cannot start or continue a run."""


class EhrQaRunError(EhrQaError):
    """A run stopped on an exception; `resume_ehr_qa(graph, thread_id)` continues it once fixed."""

    def __init__(self, thread_id: str, cause: BaseException) -> None:
        super().__init__(f"EHR QA run {thread_id} stopped: {type(cause).__name__}: {cause}")
        self.thread_id = thread_id


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
        out = ["Trace:"]
        for e in self.trace:
            tokens = f" in={e.tokens_in} out={e.tokens_out}" if e.tokens_in is not None else ""
            detail = " ".join(p for p in (e.summary, f"ERROR {e.error}" if e.error else "") if p)
            out.append(f"  {e.kind:5} {e.name:16} {e.duration_ms:9.1f} ms{tokens}  {detail}")
        out.append("Evidence:")
        out += [f"  {line.text}" for line in self.evidence] or ["  (none)"]
        out.append(f"Answer: {self.answer}")
        out += [f"Error: {e}" for e in self.errors]
        return "\n".join(out)


def _result(thread_id: str, values: Mapping[str, Any]) -> EhrQaResult:
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


async def _invoke(graph: Pregel, payload: dict[str, Any] | None, config: RunnableConfig) -> dict[str, Any]:
    thread_id = config["configurable"]["thread_id"]
    try:
        values = await graph.ainvoke(payload, config)
    except EhrQaError:
        raise
    except Exception as exc:
        raise EhrQaRunError(thread_id, exc) from exc
    return dict(values)


async def run_ehr_qa(
    graph: Pregel,
    question: str,
    patient_id: str,
    *,
    thread_id: str | None = None,
    config: RunnableConfig | None = None,
) -> EhrQaResult:
    """Answer one question about one patient; with a known `thread_id`, continue or return that run."""
    question = question.strip()
    if not question:
        raise EhrQaInputError("the question is empty")
    if (reason := unstorable_character(question)) is not None:
        raise EhrQaInputError(f"the question {reason}; remove it")
    if not FHIR_ID.match(patient_id):
        raise EhrQaInputError(f"not a FHIR patient id: {patient_id!r}")
    thread_id = thread_id or uuid.uuid4().hex
    run_config = _run_config(config, thread_id)

    if _has_checkpointer(graph):
        snapshot = await graph.aget_state(run_config)
        if snapshot.values:
            held = (snapshot.values.get("question"), snapshot.values.get("patient_id"))
            if held != (question, patient_id):
                raise EhrQaInputError(
                    f"thread {thread_id} holds another question or patient ({held[1]}: {held[0]!r}); "
                    "use a new thread id"
                )
            if snapshot.next:
                return _result(thread_id, await _invoke(graph, None, run_config))
            return _result(thread_id, snapshot.values)

    values = await _invoke(graph, {"question": question, "patient_id": patient_id}, run_config)
    return _result(thread_id, values)


async def resume_ehr_qa(
    graph: Pregel, thread_id: str, *, config: RunnableConfig | None = None
) -> EhrQaResult:
    """Continue the run checkpointed under `thread_id` (or return it if it finished)."""
    if not _has_checkpointer(graph):
        raise EhrQaInputError("this graph has no checkpointer, so there is nothing to resume")
    run_config = _run_config(config, thread_id)
    snapshot = await graph.aget_state(run_config)
    if not snapshot.values:
        raise EhrQaInputError(f"no checkpointed run under thread id {thread_id!r}")
    if snapshot.next:
        return _result(thread_id, await _invoke(graph, None, run_config))
    return _result(thread_id, snapshot.values)
