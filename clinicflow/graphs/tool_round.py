"""One round of tool calls through a guarded `ToolNode`: the messages for the model, one timed trace
record per call, and the failures a run reports (a failed data source, not a bad argument)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, ToolCall, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolNode

from clinicflow.graphs.tool_errors import guarded_tool_call, pop_timing
from clinicflow.graphs.trace import TraceRecord, shorten, trace_event

__all__ = ["ToolRound", "guarded_tool_node", "read_tool_round"]


def guarded_tool_node(
    tools: Sequence[BaseTool], *, name: str, templates: Mapping[str, str], messages_key: str = "messages"
) -> ToolNode:
    """A `ToolNode` whose calls never raise into the graph: failures are answered with `templates`
    (`failed`, `bad_arguments`, `unknown`; see `guarded_tool_call`) and each call is timed."""
    return ToolNode(
        list(tools),
        name=name,
        handle_tool_errors=False,
        awrap_tool_call=guarded_tool_call(**templates),
        messages_key=messages_key,
    )


@dataclass
class ToolRound:
    """What one round of tool calls produced."""

    messages: list[ToolMessage] = field(default_factory=list)
    trace: list[TraceRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    """Ids of the calls that ended in an error."""


def read_tool_round(
    output: Iterable[BaseMessage], calls: Iterable[ToolCall], summarize: Callable[[ToolMessage], str]
) -> ToolRound:
    """Read a guarded `ToolNode`'s messages: timing taken off, each call traced (`summarize` describes a
    success), and a failed data source named among the run's errors."""
    args = {c["id"]: c["args"] for c in calls}
    done = ToolRound()
    for raw in output:
        assert isinstance(raw, ToolMessage)
        message, timing = pop_timing(raw)
        done.messages.append(message)
        name = message.name or "?"
        kind: Any = timing.get("error_kind")
        error = None
        if message.status == "error" or kind:
            error = f"{kind or 'tool error'}: {shorten(message.text)}"
            done.failed.add(message.tool_call_id)
            if kind == "tool failed":
                done.errors.append(f"{name} failed: {shorten(message.text)}")
        done.trace.append(
            trace_event(
                "tool",
                name,
                args=dict(args.get(message.tool_call_id) or {}),
                summary="" if error else summarize(message),
                started=timing.get("started"),
                duration_ms=timing.get("duration_ms", 0.0),
                error=error,
            )
        )
    return done
