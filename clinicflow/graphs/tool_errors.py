"""Tool calls that never raise into the graph: each is timed, and any failure becomes a message the
model can read, with its kind recorded for the trace (`timing(message)`).

A tool that handles its own errors still answers with its own message; the guarded call hands it
handlers that answer the same and keep the exception, so the kind comes from the exception's type."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, ToolException
from langchain_core.tools.base import _handle_tool_error, _handle_validation_error
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolInvocationError
from langgraph.types import Command
from pydantic import ValidationError

from clinicflow.graphs.trace import now
from clinicflow.tools.errors import BadToolArguments, validation_problems

__all__ = ["ToolExecutor", "guarded_tool_call", "pop_timing"]

ToolExecutor = Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]]
ToolWrapper = Callable[[ToolCallRequest, ToolExecutor], Awaitable[ToolMessage | Command]]

_TIMING_KEY = "clinicflow_timing"


def guarded_tool_call(*, failed: str, bad_arguments: str, unknown: str) -> ToolWrapper:
    """A `ToolNode` `awrap_tool_call` that times each call and answers failures with these templates
    (`{tool}` and `{error}`; `unknown` takes `{tool}` and `{tools}`)."""

    async def run(request: ToolCallRequest, execute: ToolExecutor) -> ToolMessage | Command:
        call = request.tool_call
        started = now()
        t0 = time.perf_counter()
        error_kind: str | None = None
        result: ToolMessage | Command
        try:
            if request.tool is None:
                error_kind = "unknown tool"
                tools = ", ".join(t.name for t in request.runtime.tools) if request.runtime else ""
                result = _error(call, unknown.format(tool=call["name"], tools=tools))
            else:
                tool, handled = _keeping_handled_errors(request.tool)
                result = await execute(request.override(tool=tool))
                if isinstance(result, ToolMessage) and result.status == "error":
                    error_kind = _kind(handled[-1] if handled else None)
        except GraphBubbleUp:
            raise
        except ToolInvocationError as exc:
            error_kind = "bad arguments"
            problems = (
                validation_problems(exc.filtered_errors)
                if exc.filtered_errors is not None
                else str(exc.source)
            )
            result = _error(call, bad_arguments.format(tool=call["name"], error=problems))
        except Exception as exc:
            error_kind = "tool failed"
            result = _error(call, failed.format(tool=call["name"], error=f"{type(exc).__name__}: {exc}"))
        if isinstance(result, ToolMessage):
            result.response_metadata[_TIMING_KEY] = {
                "started": started,
                "duration_ms": (time.perf_counter() - t0) * 1000,
                "error_kind": error_kind,
            }
        return result

    return run


def pop_timing(message: ToolMessage) -> tuple[ToolMessage, dict[str, Any]]:
    """The message without its timing record, and the record (`started`, `duration_ms`, `error_kind`)."""
    meta = dict(message.response_metadata)
    timing: dict[str, Any] = meta.pop(_TIMING_KEY, {})
    return message.model_copy(update={"response_metadata": meta}), timing


def _keeping_handled_errors(tool: BaseTool) -> tuple[BaseTool, list[Exception]]:
    """A copy of `tool` whose error handlers answer as its own do and keep each exception they handle."""
    handled: list[Exception] = []
    updates: dict[str, Any] = {}
    on_tool_error, on_bad_input = tool.handle_tool_error, tool.handle_validation_error
    if on_tool_error:

        def tool_error(exc: ToolException) -> Any:
            handled.append(exc)
            return _handle_tool_error(exc, flag=on_tool_error)

        updates["handle_tool_error"] = tool_error
    if on_bad_input:

        def bad_input(exc: Any) -> str:
            handled.append(exc)
            return _handle_validation_error(exc, flag=on_bad_input)

        updates["handle_validation_error"] = bad_input
    return (tool.model_copy(update=updates) if updates else tool), handled


def _kind(error: Exception | None) -> str:
    """The kind of a failure a tool answered itself: its arguments, or anything else."""
    return "bad arguments" if isinstance(error, BadToolArguments | ValidationError) else "tool failed"


def _error(call: Any, text: str) -> ToolMessage:
    return ToolMessage(text, name=call["name"], tool_call_id=call["id"] or "", status="error")
