"""Tool calls that never raise into the graph: each is timed, and any failure becomes a message the
model can read, with its kind recorded for the trace (`timing(message)`)."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolInvocationError
from langgraph.types import Command

from clinicflow.graphs.trace import now

__all__ = ["ToolExecutor", "guarded_tool_call", "pop_timing"]

ToolExecutor = Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]]
ToolWrapper = Callable[[ToolCallRequest, ToolExecutor], Awaitable[ToolMessage | Command]]

_TIMING_KEY = "clinicflow_timing"
_BAD_ARGUMENTS = re.compile(r"^\s*(?:[\w.-]+:\s*)?bad arguments", re.IGNORECASE)


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
                result = await execute(request)
                if isinstance(result, ToolMessage) and result.status == "error":
                    error_kind = "bad arguments" if _BAD_ARGUMENTS.match(result.text) else "tool failed"
        except GraphBubbleUp:
            raise
        except ToolInvocationError as exc:
            error_kind = "bad arguments"
            problems = (
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.filtered_errors)
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


def _error(call: Any, text: str) -> ToolMessage:
    return ToolMessage(text, name=call["name"], tool_call_id=call["id"] or "", status="error")
