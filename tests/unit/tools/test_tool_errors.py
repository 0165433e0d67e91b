"""Typed tool errors end to end: a tool answers its own errors with its own message, and the guarded
tool call records their kind from the exception, not from the message's wording."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from clinicflow.graphs.tool_errors import guarded_tool_call, pop_timing
from clinicflow.tools.errors import BadToolArguments, ToolFailed

GUARD = guarded_tool_call(
    failed="Tool {tool} failed: {error}",
    bad_arguments="Bad arguments for tool {tool}: {error}",
    unknown="No tool {tool}; use one of {tools}",
)


def _tool(error: Exception | None) -> BaseTool:
    async def lookup(term: str) -> str:
        """Look a term up."""
        if error is not None:
            raise error
        return f"found {term}"

    return StructuredTool.from_function(
        coroutine=lookup,
        handle_tool_error=True,
        handle_validation_error=lambda exc: "Bad arguments: term is required",
    )


def _graph(tool: BaseTool) -> Any:
    graph = StateGraph(MessagesState)
    graph.add_node("tools", ToolNode([tool], handle_tool_errors=False, awrap_tool_call=GUARD))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    return graph.compile()


async def _call(
    tool: BaseTool, args: dict[str, Any], name: str = "lookup", callbacks: list[Any] | None = None
) -> tuple[ToolMessage, Any]:
    call = {"name": name, "args": args, "id": "call-1", "type": "tool_call"}
    out = await _graph(tool).ainvoke(
        {"messages": [AIMessage("", tool_calls=[call])]}, config={"callbacks": callbacks or []}
    )
    message, timing = pop_timing(out["messages"][-1])
    return message, timing.get("error_kind")


async def test_a_tool_s_typed_errors_keep_their_message_and_give_their_kind() -> None:
    cases = [
        (BadToolArguments("k must be 1 to 5"), "Bad arguments: k must be 1 to 5", "bad arguments"),
        (
            ToolFailed("search_images failed: index missing"),
            "search_images failed: index missing",
            "tool failed",
        ),
        (
            ToolException("bad arguments, says an untyped error"),
            "bad arguments, says an untyped error",
            "tool failed",
        ),
    ]
    for error, text, kind in cases:
        message, error_kind = await _call(_tool(error), {"term": "a1c"})
        assert (message.text, message.status, error_kind) == (text, "error", kind)


async def test_bad_input_answered_by_the_tool_is_bad_arguments() -> None:
    message, error_kind = await _call(_tool(None), {})
    assert (message.text, message.status, error_kind) == (
        "Bad arguments: term is required",
        "error",
        "bad arguments",
    )


async def test_answers_and_other_failures_are_unchanged() -> None:
    message, error_kind = await _call(_tool(None), {"term": "a1c"})
    assert (message.text, message.status, error_kind) == ("found a1c", "success", None)
    message, error_kind = await _call(_tool(ConnectionError("refused")), {"term": "a1c"})
    assert (message.text, error_kind) == ("Tool lookup failed: ConnectionError: refused", "tool failed")
    message, error_kind = await _call(_tool(None), {"term": "a1c"}, name="delete")
    assert (message.text, error_kind) == ("No tool delete; use one of lookup", "unknown tool")


async def test_direct_callers_and_callbacks_see_what_they_saw_before() -> None:
    tool = _tool(ToolFailed("Tool failed: FHIR server error: down"))
    assert await tool.ainvoke({"term": "a1c"}) == "Tool failed: FHIR server error: down"

    class Seen(AsyncCallbackHandler):
        def __init__(self) -> None:
            self.events: list[str] = []

        async def on_tool_end(self, output: Any, **kwargs: Any) -> None:
            self.events.append(f"end {output.status}")

        async def on_tool_error(self, error: BaseException, **kwargs: Any) -> None:
            self.events.append("error")

    seen = Seen()
    await _call(tool, {"term": "a1c"}, callbacks=[seen])
    assert seen.events == ["end error"]
