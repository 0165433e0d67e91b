"""The shared agent step (accept, strip hidden arguments, reject and count) and the runner (threads,
resume, errors) on small graphs."""

from __future__ import annotations

from typing import Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

from clinicflow.agents.ehr_qa import render_reply
from clinicflow.graphs.agent_step import AgentStep, invalid_reason
from clinicflow.graphs.runner import RunInputError, RunStoppedError, resume_workflow, run_workflow
from clinicflow.graphs.workflow import RunErrors, Workflow
from tests.fakes import ScriptedChatModel, calls, invalid_call, text_reply, tool_call


def _step(model: ScriptedChatModel, max_retries: int = 1) -> AgentStep:
    return AgentStep(
        model,
        name="planner",
        tool_names=["search_record"],
        hidden={"search_record": {"patient_id"}},
        render=render_reply,
        max_retries=max_retries,
    )


async def test_an_accepted_reply_loses_the_arguments_the_model_may_not_set() -> None:
    model = ScriptedChatModel(script=[calls(tool_call("search_record", code="x", patient_id="other"))])
    step = await _step(model)([HumanMessage("q")], {}, streak=1)
    assert step.accepted and step.reply.tool_calls[0]["args"] == {"code": "x"}
    assert step.event["kind"] == "model" and step.event["args"]["ignored_args"] == [
        "search_record.patient_id"
    ]
    assert step.event["args"]["messages"] == 1


async def test_invalid_replies_are_counted_until_the_model_gives_up() -> None:
    model = ScriptedChatModel(script=[text_reply("no call"), invalid_call("search_record", "{", "bad JSON")])
    step = _step(model, max_retries=1)
    first = await step([HumanMessage("q")], {}, streak=0)
    assert not first.accepted and first.streak == 1 and not first.gave_up
    assert first.reason == "the reply held no tool call"
    assert first.event["error"] == "invalid tool call: the reply held no tool call"
    assert "search_record" in first.messages[-1].text
    second = await step([HumanMessage("q")], {}, streak=first.streak)
    assert second.gave_up and second.reason == "search_record: bad JSON" == invalid_reason(second.reply)


class _State(TypedDict, total=False):
    word: str
    fail: bool
    echo: str


class _Input(BaseModel):
    word: str


class _Failed(RunStoppedError):
    label = "Echo"


def _graph() -> Any:
    def echo(state: _State) -> dict[str, Any]:
        if state.get("fail"):
            raise RuntimeError("boom")
        return {"echo": state["word"] * 2}

    builder = StateGraph(_State)
    builder.add_node("echo", echo)
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    return builder.compile(checkpointer=InMemorySaver())


ECHO = Workflow(
    name="echo",
    description="Test workflow.",
    input_model=_Input,
    build=None,  # type: ignore[arg-type]
    errors=RunErrors(input=RunInputError, run=_Failed),
    held=("word",),
    subject="word",
)


async def test_a_thread_runs_once_and_is_returned_again() -> None:
    graph = _graph()
    first = await run_workflow(ECHO, graph, {"word": "ab"}, thread_id="t1")
    assert first["echo"] == "abab"
    assert await run_workflow(ECHO, graph, {"word": "ab"}, thread_id="t1") == first
    assert await resume_workflow(ECHO, graph, "t1") == first
    with pytest.raises(RunInputError, match="thread t1 holds another word"):
        await run_workflow(ECHO, graph, {"word": "cd"}, thread_id="t1")
    with pytest.raises(RunInputError, match="no checkpointed run under thread id 'nope'"):
        await resume_workflow(ECHO, graph, "nope")
    with pytest.raises(RunInputError, match="has no write awaiting approval"):
        await resume_workflow(ECHO, graph, "t1", "approve")


async def test_an_exception_in_the_graph_is_the_workflow_run_error() -> None:
    with pytest.raises(_Failed, match="Echo run t2 stopped: RuntimeError: boom") as stopped:
        await run_workflow(ECHO, _graph(), {"word": "ab", "fail": True}, thread_id="t2")
    assert stopped.value.thread_id == "t2" and isinstance(stopped.value.cause, RuntimeError)
