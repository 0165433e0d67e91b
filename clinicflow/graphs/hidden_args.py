"""Tool arguments the model may not set (the patient id among them): found per tool, and stripped.

Such arguments are injected from graph state or the runtime; a model that writes one anyway has it
removed before the tool runs, and the graph records what was removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from langchain_core.messages import AIMessage, ToolCall
from langchain_core.tools import BaseTool

__all__ = ["RUNTIME_ARGS", "hidden_args", "input_fields", "strip_hidden_args"]

RUNTIME_ARGS = frozenset({"patient_id", "state", "store", "runtime", "tool_call_id", "config"})
"""Arguments tools receive from the graph or runtime, never shown in traces or audit rows."""


def input_fields(tool: BaseTool) -> dict[str, Any]:
    """All fields of a tool's input schema, injected ones included."""
    fields: dict[str, Any] = getattr(tool.get_input_schema(), "model_fields", {})
    return fields


def hidden_args(tools: Iterable[BaseTool]) -> dict[str, set[str]]:
    """Per tool name, the arguments it takes that the model does not see."""
    return {tool.name: set(input_fields(tool)) - set(tool.args) for tool in tools}


def strip_hidden_args(reply: AIMessage, hidden: Mapping[str, set[str]]) -> tuple[AIMessage, list[str]]:
    """The reply without hidden arguments in its tool calls, and `tool.argument` for each one removed."""
    stripped: list[str] = []
    cleaned: list[ToolCall] = []
    for call in reply.tool_calls:
        drop = hidden.get(call["name"], set())
        stripped += [f"{call['name']}.{k}" for k in call["args"] if k in drop]
        cleaned.append({**call, "args": {k: v for k, v in call["args"].items() if k not in drop}})
    if not stripped:
        return reply, []
    return reply.model_copy(update={"tool_calls": cleaned}), stripped
