"""`next_input`: what the runner streams next on a thread, read from real checkpoints of a small graph."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from clinicflow.graphs.runner import AWAITING_DECISION, next_input


class _State(TypedDict, total=False):
    word: str
    decision: Any


def _graph() -> Any:
    def ask(state: _State) -> dict[str, Any]:
        return {"decision": interrupt({"write": state["word"]})}

    builder = StateGraph(_State)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=InMemorySaver())


async def test_next_input_starts_waits_resumes_and_continues() -> None:
    graph, config = _graph(), {"configurable": {"thread_id": "t"}}
    decisions: dict[str, Any] = {}

    async def decision(interrupt_id: str) -> Any:
        return decisions.get(interrupt_id)

    def start() -> dict[str, Any]:
        return {"word": "ab"}

    assert await next_input(await graph.aget_state(config), start, decision) == {"word": "ab"}
    await graph.ainvoke(start(), config)
    snapshot = await graph.aget_state(config)
    assert await next_input(snapshot, start, decision) is AWAITING_DECISION
    decisions[snapshot.interrupts[0].id] = {"action": "approve"}
    command = await next_input(snapshot, start, decision)
    assert isinstance(command, Command)
    assert command.resume == {snapshot.interrupts[0].id: {"action": "approve"}}
    await graph.ainvoke(command, config)
    finished = await graph.aget_state(config)
    assert finished.values["decision"] == {"action": "approve"}
    assert await next_input(finished, start, decision) is None
