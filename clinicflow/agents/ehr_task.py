"""The agent role for instruction-style EHR tasks: query the record, then act through approval-gated writes.

The role is a system prompt, the tool set (the caller's read tools, the write tools, and `finish_task`) and
an output contract: the task ends with one `finish_task` call carrying the answers as a JSON list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from clinicflow.agents.ehr_qa import BAD_ARGUMENTS_TEMPLATE, INVALID_REPLY_TEMPLATE, UNKNOWN_TOOL_TEMPLATE
from clinicflow.agents.ehr_qa import invalid_reply_message as invalid_task_reply

__all__ = [
    "FINISH_TASK_TOOL",
    "INVALID_TASK_REPLY_TEMPLATE",
    "TASK_AGENT_PROMPT",
    "TASK_TOOL_FAILED_TEMPLATE",
    "TASK_TOOL_TEMPLATES",
    "TaskAnswer",
    "current_time_from_context",
    "finish_task_tool",
    "invalid_task_reply",
    "render_task_reply",
    "task_messages",
]

FINISH_TASK_TOOL = "finish_task"

TASK_AGENT_PROMPT = f"""\
You carry out clinical tasks in one patient's electronic health record (FHIR R4).
Work step by step: first look up what the task needs with the read tools, then act.
To record or order something, call a create_* tool. Every write is shown to a clinician and runs only \
after approval; the tool result says whether it was created, rejected (with the reason) or invalid.
Never order anything the task does not ask for, and never write the same thing twice.
Use the current time given below for "now", "last 24 hours", "next day" and for dates you write.
When the task is done, call {FINISH_TASK_TOOL} once with the answers as a list, in the order the task \
asks for them (an empty list when the task asks for no answer).
The patient is fixed by the system: never pass a patient id."""

INVALID_TASK_REPLY_TEMPLATE = INVALID_REPLY_TEMPLATE
TASK_TOOL_FAILED_TEMPLATE = "Tool {tool} failed: {error}"
TASK_TOOL_TEMPLATES = {
    "failed": TASK_TOOL_FAILED_TEMPLATE,
    "bad_arguments": BAD_ARGUMENTS_TEMPLATE,
    "unknown": UNKNOWN_TOOL_TEMPLATE,
}
"""How a failed read, bad arguments and an unknown tool are told to the task agent."""

_NOW_IN_CONTEXT = re.compile(
    r"(?:it'?s|it is|current time(?: is)?:?|now is)\s*"
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)",
    re.IGNORECASE,
)


class TaskAnswer(BaseModel):
    """The output contract: the task's answers, in order, and a short note on what was done."""

    answers: list[str | float | int] = Field(
        default_factory=list,
        description='Answers in the order the task asks, e.g. [1.8] or ["S1234567"]; [] when none is asked.',
    )
    summary: str = Field("", description="One sentence on what was looked up and done.")


def _finish(answers: list[Any] | None = None, summary: str = "") -> str:
    return json.dumps({"answers": answers or [], "summary": summary})


def finish_task_tool() -> BaseTool:
    """The tool that ends a task with its answers."""
    return StructuredTool.from_function(
        func=_finish,
        name=FINISH_TASK_TOOL,
        description="Finish the task and give its answers as a list (empty when no answer is asked).",
        args_schema=TaskAnswer,
    )


def current_time_from_context(context: str | None) -> str | None:
    """The current time a task's context states ("It's 2023-11-13T10:15:00+00:00 now."), as written."""
    if not context:
        return None
    match = _NOW_IN_CONTEXT.search(context)
    if match is None:
        return None
    text = match.group(1)
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return text


def task_messages(
    instruction: str,
    *,
    context: str = "",
    now: str | None,
    patient_label: str | None,
    history: Sequence[BaseMessage] = (),
) -> list[BaseMessage]:
    """System prompt, then the task (instruction, context, current time, patient), then the conversation."""
    lines = [f"Task: {instruction.strip()}"]
    if context.strip():
        lines.append(f"Context: {context.strip()}")
    lines.append(f"Current time: {now}" if now else "Current time: not given")
    lines.append(
        f"Patient in context: {patient_label}"
        if patient_label
        else "No patient is in context: the patient-scoped tools cannot read or write a record."
    )
    return [SystemMessage(TASK_AGENT_PROMPT), HumanMessage("\n".join(lines)), *history]


def render_task_reply(reply: AIMessage) -> str:
    """A reply as plain text for traces and retries: its text and its calls as JSON."""
    parts = [reply.text.strip()] if reply.text.strip() else []
    parts += [json.dumps({"name": c["name"], "arguments": c["args"]}, default=str) for c in reply.tool_calls]
    parts += [f"{c.get('name') or '?'}({c.get('args') or ''})" for c in reply.invalid_tool_calls]
    return "\n".join(parts)
