"""The EHR task graph with a scripted model: writes stop for approval, and only approved writes are sent."""

from __future__ import annotations

from typing import Annotated

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import StructuredTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import InjectedState

from clinicflow.agents.ehr_task import FINISH_TASK_TOOL, current_time_from_context
from clinicflow.graphs.ehr_task import (
    EhrTaskInputError,
    EhrTaskRunError,
    build_ehr_task_graph,
    resume_ehr_task,
    route_after_agent,
    route_after_approve,
    route_after_tools,
    run_ehr_task,
)
from clinicflow.tools.write_tools import CREATE_OBSERVATION, CREATE_SERVICE_REQUEST, FhirWriter
from tests.fakes import ScriptedChatModel, calls, invalid_call, text_reply, tool_call

from .fake_fhir import FakeFhir

CONTEXT = "It's 2023-11-13T10:15:00+00:00 now. The flowsheet ID for blood pressure is BP."
NOW = "2023-11-13T10:15:00+00:00"
BP = {"code_text": "BP", "value_string": "118/77 mmHg"}


async def _latest_vitals(patient_id: Annotated[str, InjectedState("patient_id")]) -> str:
    """The patient's latest vital signs."""
    return f"2023-11-12 BP 120/80 mmHg [Observation/{patient_id}-bp]"


def _read_tools() -> list[StructuredTool]:
    return [StructuredTool.from_function(coroutine=_latest_vitals, name="latest_vitals")]


def _graph(model: ScriptedChatModel, fake: FakeFhir, **kw):
    client = fake.client()
    saver = kw.pop("checkpointer", InMemorySaver())
    return build_ehr_task_graph(model, _read_tools(), FhirWriter(client), checkpointer=saver, **kw), client


def _tool_results(model: ScriptedChatModel, call_index: int) -> list[ToolMessage]:
    return [m for m in model.calls[call_index].messages if isinstance(m, ToolMessage)]


async def test_a_write_waits_for_approval_and_nothing_reaches_the_server() -> None:
    fake = FakeFhir()
    model = ScriptedChatModel(
        script=[
            calls(tool_call("latest_vitals"), tool_call(CREATE_OBSERVATION, **BP)),
            calls(tool_call(FINISH_TASK_TOOL, answers=[])),
        ]
    )
    graph, client = _graph(model, fake)
    async with client:
        result = await run_ehr_task(
            graph, "Record BP 118/77 mmHg.", context=CONTEXT, patient_id="p1", thread_id="t1"
        )
        assert result.status == "awaiting_approval"
        assert fake.requests == [], "no request of any kind before the decision"
        pending = result.pending_approval
        assert pending is not None and pending["resource"]["valueString"] == "118/77 mmHg"
        assert pending["resource"]["subject"] == {"reference": "Patient/p1"}
        assert pending["resource"]["effectiveDateTime"] == NOW, "the time comes from the task context"
        again = await resume_ehr_task(graph, "t1")
        assert again.status == "awaiting_approval" and fake.requests == []

        done = await resume_ehr_task(graph, "t1", {"action": "approve"})
    assert done.status == "finished"
    assert len(fake.posts) == 1 and len(fake.resources) == 1
    stored = fake.resources[0]
    assert {k: v for k, v in stored.items() if k != "id"} == pending["resource"], (
        "exactly the approved resource"
    )
    assert [(w.status, w.decided_by) for w in done.writes] == [("created", "reviewer")]
    assert done.approval_policy == "require"
    results = _tool_results(model, 1)
    assert any("Created Observation/observation-1" in m.text for m in results)
    assert any("[Observation/p1-bp]" in m.text for m in results), "read tools ran with the injected patient"


async def test_reject_sends_nothing_and_tells_the_agent_why() -> None:
    fake = FakeFhir()
    model = ScriptedChatModel(
        script=[calls(tool_call(CREATE_OBSERVATION, **BP)), calls(tool_call(FINISH_TASK_TOOL, answers=[]))]
    )
    graph, client = _graph(model, fake)
    async with client:
        await run_ehr_task(graph, "Record BP.", context=CONTEXT, patient_id="p1", thread_id="t")
        done = await resume_ehr_task(graph, "t", {"action": "reject", "reason": "wrong patient"})
    assert fake.requests == []
    assert [(w.status, w.reason) for w in done.writes] == [("rejected", "wrong patient")]
    assert any("rejected by the reviewer: wrong patient" in m.text for m in _tool_results(model, 1))


async def test_edit_then_approve_writes_the_replacement_for_the_same_patient() -> None:
    fake = FakeFhir()
    model = ScriptedChatModel(
        script=[calls(tool_call(CREATE_OBSERVATION, **BP)), calls(tool_call(FINISH_TASK_TOOL, answers=[]))]
    )
    graph, client = _graph(model, fake)
    async with client:
        first = await run_ehr_task(graph, "Record BP.", context=CONTEXT, patient_id="p1", thread_id="t")
        assert first.pending_approval is not None
        edited = {**first.pending_approval["resource"], "valueString": "119/77 mmHg"}
        edited.pop("subject")
        done = await resume_ehr_task(graph, "t", {"action": "edit", "resource": edited})
    assert len(fake.resources) == 1
    assert fake.resources[0]["valueString"] == "119/77 mmHg"
    assert fake.resources[0]["subject"] == {"reference": "Patient/p1"}
    assert done.writes[0].status == "created"


async def test_an_edit_cannot_move_the_write_to_another_patient() -> None:
    fake = FakeFhir()
    model = ScriptedChatModel(
        script=[calls(tool_call(CREATE_OBSERVATION, **BP)), calls(tool_call(FINISH_TASK_TOOL, answers=[]))]
    )
    graph, client = _graph(model, fake)
    async with client:
        first = await run_ehr_task(graph, "Record BP.", context=CONTEXT, patient_id="p1", thread_id="t")
        assert first.pending_approval is not None
        edited = {**first.pending_approval["resource"], "subject": {"reference": "Patient/p2"}}
        done = await resume_ehr_task(graph, "t", {"action": "edit", "resource": edited})
    assert fake.resources == []
    assert done.writes[0].status == "invalid"
    assert "subject must be the patient in context" in done.writes[0].errors[0]


async def test_an_invalid_approved_edit_returns_validation_errors_and_writes_nothing() -> None:
    fake = FakeFhir()
    model = ScriptedChatModel(
        script=[calls(tool_call(CREATE_OBSERVATION, **BP)), calls(tool_call(FINISH_TASK_TOOL, answers=[]))]
    )
    graph, client = _graph(model, fake)
    async with client:
        first = await run_ehr_task(graph, "Record BP.", context=CONTEXT, patient_id="p1", thread_id="t")
        assert first.pending_approval is not None
        broken = {k: v for k, v in first.pending_approval["resource"].items() if k != "code"}
        done = await resume_ehr_task(graph, "t", {"action": "edit", "resource": broken})
    assert fake.requests == []
    assert done.writes[0].status == "invalid"
    assert any("code" in e for e in done.writes[0].errors)
    assert any("invalid FHIR R4 Observation" in m.text and "code" in m.text for m in _tool_results(model, 1))


async def test_invalid_write_arguments_go_back_to_the_agent_without_an_approval() -> None:
    fake = FakeFhir()
    model = ScriptedChatModel(
        script=[
            calls(tool_call(CREATE_SERVICE_REQUEST, code="4548-4")),
            calls(tool_call(FINISH_TASK_TOOL, answers=[])),
        ]
    )
    graph, client = _graph(model, fake)
    async with client:
        done = await run_ehr_task(graph, "Order A1C.", context=CONTEXT, patient_id="p1")
    assert done.status == "finished" and done.pending_approval is None
    assert done.writes[0].status == "bad_arguments"
    assert any("code_system is required" in m.text for m in _tool_results(model, 1))
    assert fake.requests == []


async def test_a_malformed_decision_asks_again() -> None:
    fake = FakeFhir()
    model = ScriptedChatModel(
        script=[calls(tool_call(CREATE_OBSERVATION, **BP)), calls(tool_call(FINISH_TASK_TOOL, answers=[]))]
    )
    graph, client = _graph(model, fake)
    async with client:
        await run_ehr_task(graph, "Record BP.", context=CONTEXT, patient_id="p1", thread_id="t")
        with pytest.raises(EhrTaskInputError, match="a decision is"):
            await resume_ehr_task(graph, "t", {"action": "reject"})
        from langgraph.types import Command

        values = await graph.ainvoke(
            Command(resume={"action": "perhaps"}), {"configurable": {"thread_id": "t"}}
        )
        request = values["__interrupt__"][0].value
        assert "a decision is" in request["error"]
        assert fake.requests == []
        done = await resume_ehr_task(graph, "t", "approve")
    assert len(fake.resources) == 1 and done.status == "finished"


async def test_auto_approve_policy_is_explicit_and_recorded() -> None:
    fake = FakeFhir()
    model = ScriptedChatModel(
        script=[
            calls(tool_call(CREATE_OBSERVATION, **BP)),
            calls(tool_call(FINISH_TASK_TOOL, answers=["done"])),
        ]
    )
    graph = build_ehr_task_graph(model, [], FhirWriter(fake.client()), approval="auto_approve")
    done = await run_ehr_task(graph, "Record BP.", context=CONTEXT, patient_id="p1")
    assert done.status == "finished" and done.answers == ["done"]
    assert done.approval_policy == "auto_approve"
    assert done.writes[0].decided_by == "policy:auto_approve"
    assert any(e.kind == "approval" and "policy:auto_approve" in e.summary for e in done.trace)
    assert len(fake.resources) == 1


def test_require_policy_needs_a_checkpointer() -> None:
    with pytest.raises(ValueError, match="checkpointer"):
        build_ehr_task_graph(ScriptedChatModel(), [], FhirWriter(FakeFhir().client()))


async def test_a_crash_after_approval_resumes_without_asking_again_and_writes_once() -> None:
    fake = FakeFhir(fail_post=lambda n: RuntimeError("process killed") if n == 1 else None)
    model = ScriptedChatModel(
        script=[calls(tool_call(CREATE_OBSERVATION, **BP)), calls(tool_call(FINISH_TASK_TOOL, answers=[]))]
    )
    graph, client = _graph(model, fake)
    async with client:
        await run_ehr_task(graph, "Record BP.", context=CONTEXT, patient_id="p1", thread_id="t")
        with pytest.raises(EhrTaskRunError):
            await resume_ehr_task(graph, "t", {"action": "approve"})
        done = await resume_ehr_task(graph, "t")
    assert done.status == "finished"
    assert len(fake.resources) == 1
    assert [w.status for w in done.writes] == ["created"]


async def test_invalid_replies_are_retried_then_the_run_fails() -> None:
    model = ScriptedChatModel(
        script=[text_reply("I think it is fine"), invalid_call("x", "{", "bad json"), text_reply("no")]
    )
    graph = build_ehr_task_graph(
        model, [], FhirWriter(FakeFhir().client()), approval="auto_approve", max_retries=2
    )
    done = await run_ehr_task(graph, "Record BP.", context=CONTEXT, patient_id="p1")
    assert done.status == "failed" and "gave up after 3 invalid replies" in done.errors[0]
    assert "not a valid tool call" in model.calls[1].text


async def test_step_limit_ends_the_run() -> None:
    model = ScriptedChatModel(script=[calls(tool_call("latest_vitals")), calls(tool_call("latest_vitals"))])
    graph = build_ehr_task_graph(
        model, _read_tools(), FhirWriter(FakeFhir().client()), approval="auto_approve", max_steps=2
    )
    done = await run_ehr_task(graph, "Look.", context=CONTEXT, patient_id="p1")
    assert done.status == "step_limit" and done.steps == 2


async def test_patient_id_from_the_model_is_ignored() -> None:
    model = ScriptedChatModel(
        script=[
            calls(tool_call("latest_vitals", patient_id="p9")),
            calls(tool_call(FINISH_TASK_TOOL, answers=[])),
        ]
    )
    graph = build_ehr_task_graph(
        model, _read_tools(), FhirWriter(FakeFhir().client()), approval="auto_approve"
    )
    done = await run_ehr_task(graph, "Look.", context=CONTEXT, patient_id="p1")
    assert any("[Observation/p1-bp]" in m.text for m in _tool_results(model, 1))
    assert any("latest_vitals.patient_id" in str(e.args.get("ignored_args")) for e in done.trace)


async def test_resume_with_a_decision_when_none_is_awaited_is_an_input_error() -> None:
    model = ScriptedChatModel(script=[calls(tool_call(FINISH_TASK_TOOL, answers=[1]))])
    graph, client = _graph(model, FakeFhir())
    async with client:
        done = await run_ehr_task(graph, "Say 1.", context=CONTEXT, patient_id="p1", thread_id="t")
        assert done.answers == [1]
        with pytest.raises(EhrTaskInputError, match="no write awaiting approval"):
            await resume_ehr_task(graph, "t", "approve")
        with pytest.raises(EhrTaskInputError, match="another task"):
            await run_ehr_task(graph, "Something else.", patient_id="p1", thread_id="t")


def test_time_comes_from_the_task_context() -> None:
    assert current_time_from_context(CONTEXT) == NOW
    assert current_time_from_context("It is 2024-01-02T03:04:05Z now") == "2024-01-02T03:04:05Z"
    assert current_time_from_context("no time here") is None
    assert current_time_from_context("") is None


def test_routers() -> None:
    from langchain_core.messages import AIMessage

    with_calls = {"messages": [calls(tool_call("x"))]}
    assert route_after_agent(with_calls) == "tools"  # type: ignore[arg-type]
    assert route_after_agent({"messages": [AIMessage(content="hi")]}) == "agent"  # type: ignore[arg-type]
    assert route_after_agent({"messages": [AIMessage(content="hi")], "finished": True}) == "__end__"  # type: ignore[arg-type]
    assert route_after_tools({"pending_writes": [{}], "finished": True}) == "approve"  # type: ignore[arg-type]
    assert route_after_tools({"finished": True}) == "__end__"  # type: ignore[arg-type]
    assert route_after_tools({}) == "agent"  # type: ignore[arg-type]
    assert route_after_approve({"approved": {"write": {}}}) == "write"  # type: ignore[arg-type]
    assert route_after_approve({"approved": None, "pending_writes": [{}]}) == "approve"  # type: ignore[arg-type]


def test_graph_shape_snapshot() -> None:
    graph = build_ehr_task_graph(
        ScriptedChatModel(), [], FhirWriter(FakeFhir().client()), approval="auto_approve"
    )
    drawing = graph.get_graph().draw_mermaid()
    edges = sorted(line.strip() for line in drawing.splitlines() if "->" in line)
    assert edges == EXPECTED_EDGES


EXPECTED_EDGES = sorted(
    [
        "__start__ --> agent;",
        "agent -.-> __end__;",
        "agent -.-> agent;",
        "agent -.-> tools;",
        "tools -.-> __end__;",
        "tools -.-> agent;",
        "tools -.-> approve;",
        "approve -.-> __end__;",
        "approve -.-> agent;",
        "approve -.-> approve;",
        "approve -.-> write;",
        "write -.-> __end__;",
        "write -.-> agent;",
        "write -.-> approve;",
    ]
)
