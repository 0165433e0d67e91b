"""Run limits through LangGraph's own mechanisms: a run's own `RunLimits` context, and `RemainingSteps`
ending a run before the recursion limit, on the EHR QA and EHR task graphs with a scripted model."""

from __future__ import annotations

import pytest

from clinicflow.graphs.ehr_qa import build_ehr_qa_graph
from clinicflow.graphs.ehr_qa.workflow import EHR_QA
from clinicflow.graphs.ehr_task import build_ehr_task_graph
from clinicflow.graphs.ehr_task.workflow import EHR_TASK
from clinicflow.graphs.limits import RunLimits
from clinicflow.graphs.runner import run_workflow
from clinicflow.tools.write_tools import FhirWriter
from tests.fakes import ScriptedChatModel, calls, text_reply, tool_call
from tests.unit.ehr_task.fake_fhir import FakeFhir
from tests.unit.graphs.record_tools import RecordTools
from tests.unit.graphs.test_ehr_qa_graph import A1C, QUESTION, facts, final, search_a1c

PAYLOAD = {"question": QUESTION, "patient_id": "pat-1"}


def _searching_planner(searches: int) -> ScriptedChatModel:
    return ScriptedChatModel(
        script=[*[search_a1c() for _ in range(searches)], facts(("A1c 7.9 %", [A1C])), final("7.9 %", [A1C])]
    )


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_steps >= 1"):
        RunLimits(max_steps=0)
    with pytest.raises(ValueError, match="max_retries >= 0"):
        build_ehr_qa_graph(ScriptedChatModel(script=[]), RecordTools().build(), max_retries=-1)


async def test_a_run_context_sets_that_runs_step_limit() -> None:
    model = _searching_planner(2)
    graph = build_ehr_qa_graph(model, RecordTools().build(), max_steps=8)
    result = await run_workflow(EHR_QA, graph, PAYLOAD, context=RunLimits(max_steps=2))
    assert result.steps == 2 and result.status == "answered"
    assert [c.tool_choice for c in model.calls] == ["any", "any", "record_facts", "final_answer"]


async def test_a_run_context_sets_that_runs_retries() -> None:
    model = ScriptedChatModel(script=[text_reply("no call"), text_reply("still none")])
    graph = build_ehr_qa_graph(model, RecordTools().build(), max_retries=2)
    result = await run_workflow(EHR_QA, graph, PAYLOAD, context=RunLimits(max_retries=0))
    assert len(model.calls) == 1
    assert "planner gave up after 1 invalid tool calls" in result.errors[0]


async def test_remaining_steps_end_retrieval_before_the_recursion_limit() -> None:
    # 8 planner steps would need 26 supersteps; given 9, retrieval stops after the second search.
    model = _searching_planner(2)
    graph = build_ehr_qa_graph(model, RecordTools().build(), max_steps=8)
    result = await run_workflow(EHR_QA, graph, PAYLOAD, config={"recursion_limit": 9})
    assert result.status == "answered" and result.answer.startswith("7.9 %")
    assert result.steps == 2
    assert result.errors == ["recursion limit near after 2 steps: retrieval stopped"]


async def test_remaining_steps_end_a_task_before_the_recursion_limit() -> None:
    model = ScriptedChatModel(script=[calls(tool_call("finish_task", answers=[]))])
    writer = FhirWriter(FakeFhir().client())
    graph = build_ehr_task_graph(model, [], writer, approval="auto_approve")
    payload = {"instruction": "Look.", "patient_id": "p1", "context": "", "now": "2023-11-13T10:15:00+00:00"}
    result = await run_workflow(EHR_TASK, graph, payload, config={"recursion_limit": 5})
    assert result.status == "step_limit" and not model.calls
    assert result.errors == ["recursion limit near after 0 steps"]
