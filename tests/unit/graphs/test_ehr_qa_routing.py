"""Routers of the EHR QA graph, without a model, and a snapshot of the graph's shape."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from clinicflow.graphs.ehr_qa import build_ehr_qa_graph, route_after_plan, route_after_retrieve
from tests.fakes import ScriptedChatModel, calls, tool_call
from tests.unit.graphs.record_tools import RecordTools

QUESTION = {"question": "Last HbA1c?", "patient_id": "pat-1"}


def state(**values: Any) -> Any:
    return {**QUESTION, **values}


def test_plan_with_tool_calls_goes_to_retrieve_even_on_the_last_step() -> None:
    reply = calls(tool_call("search_record", resource_type="Observation"))
    assert route_after_plan(state(messages=[reply])) == "retrieve"
    assert route_after_plan(state(messages=[reply], retrieval_done=True)) == "retrieve"


def test_invalid_plan_is_retried_until_retrieval_is_over() -> None:
    messages = [AIMessage(content="{bad json"), HumanMessage("Your last reply was not a valid tool call")]
    assert route_after_plan(state(messages=messages)) == "plan"
    assert route_after_plan(state(messages=messages, retrieval_done=True)) == "extract"


def test_plan_with_nothing_to_run_and_done_goes_to_extract() -> None:
    assert route_after_plan(state(messages=[], retrieval_done=True)) == "extract"


def test_retrieve_loops_to_plan_until_done() -> None:
    results = [ToolMessage("2023-04-02 HbA1c 7.9 % [Observation/a]", tool_call_id="c1")]
    assert route_after_retrieve(state(messages=results)) == "plan"
    assert route_after_retrieve(state(messages=results, retrieval_done=False)) == "plan"
    assert route_after_retrieve(state(messages=results, retrieval_done=True)) == "extract"


EXPECTED_MERMAID = """\
---
config:
  flowchart:
    curve: linear
---
graph TD;
\t__start__([<p>__start__</p>]):::first
\tplan(plan)
\tretrieve(retrieve)
\textract(extract)
\tanswer(answer)
\t__end__([<p>__end__</p>]):::last
\t__start__ --> plan;
\textract --> answer;
\tplan -.-> extract;
\tplan -.-> retrieve;
\tretrieve -.-> extract;
\tretrieve -.-> plan;
\tanswer --> __end__;
\tplan -.-> plan;
\tclassDef default fill:#f2f0ff,line-height:1.2
\tclassDef first fill-opacity:0
\tclassDef last fill:#bfb6fc
"""


def test_graph_shape_matches_snapshot() -> None:
    graph = build_ehr_qa_graph(ScriptedChatModel(), RecordTools().build())
    assert graph.get_graph().draw_mermaid() == EXPECTED_MERMAID
