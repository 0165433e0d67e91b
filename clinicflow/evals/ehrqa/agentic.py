"""Agentic mode: the EHR question-answering graph with the patient-scoped FHIR tools, one run per question.

Each run is checkpointed in memory just long enough to read the planner's conversation (kept in the
result as the trajectory the fine-tuning export uses), then its thread is deleted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver

from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.scoring import score
from clinicflow.graphs.ehr_qa import EhrQaResult, build_ehr_qa_graph, run_ehr_qa

__all__ = ["AgenticRunner", "result_metrics", "serialize_messages"]


def serialize_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The planner's tool calls and tool results as plain dicts."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, AIMessage):
            out.append(
                {
                    "type": "ai",
                    "content": m.text,
                    "tool_calls": [
                        {"name": c["name"], "args": c["args"], "id": c["id"]} for c in m.tool_calls
                    ],
                }
            )
        elif isinstance(m, ToolMessage):
            out.append(
                {
                    "type": "tool",
                    "name": m.name or "",
                    "tool_call_id": m.tool_call_id,
                    "content": m.text,
                    "status": m.status,
                }
            )
        else:
            out.append({"type": m.type, "content": m.text})
    return out


def result_metrics(question: Question, result: EhrQaResult) -> dict[str, Any]:
    """Correctness, evidence recall, tokens, calls and status of one graph run."""
    model_events = [
        e for e in result.trace if e.kind == "model" and (e.tokens_in is not None or e.duration_ms)
    ]
    cited = {c for line in result.evidence for c in line.citations}
    gold = question.gold_ids
    estimated = any(e.tokens_in is None for e in model_events)
    return {
        "answer": result.answer,
        "citations": result.citations,
        "correct": score(question, result.answer),
        "status": result.status,
        "evidence_recall": (sum(g in cited for g in gold) / len(gold)) if gold else None,
        "prompt_tokens": sum(e.tokens_in or 0 for e in model_events),
        "completion_tokens": sum(e.tokens_out or 0 for e in model_events),
        "tokens_estimated": estimated,
        "model_calls": len(model_events),
        "tool_calls": sum(1 for e in result.trace if e.kind == "tool"),
        "steps": result.steps,
        "errors": result.errors,
    }


class AgenticRunner:
    """Answers questions through one compiled EHR QA graph shared by all runs."""

    def __init__(self, model: BaseChatModel, tools: Sequence[BaseTool], *, max_steps: int = 8) -> None:
        self.checkpointer = InMemorySaver()
        self.graph = build_ehr_qa_graph(model, tools, checkpointer=self.checkpointer, max_steps=max_steps)

    async def answer(self, question: Question) -> dict[str, Any]:
        """Run the graph on one question; return the per-question result line (with the trajectory)."""
        thread = f"ehrqa-{question.id}-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        try:
            result = await run_ehr_qa(self.graph, question.text, question.patient_id, thread_id=thread)
            latency = time.perf_counter() - started
            snapshot = await self.graph.aget_state({"configurable": {"thread_id": thread}})
            planner = serialize_messages(snapshot.values.get("messages", []))
        finally:
            await self.checkpointer.adelete_thread(thread)
        line = result_metrics(question, result)
        line["latency_s"] = round(latency, 3)
        line["trajectory"] = {
            "planner": planner,
            "evidence": [e.text for e in result.evidence],
            "facts": [f.model_dump() for f in result.facts],
        }
        return line
