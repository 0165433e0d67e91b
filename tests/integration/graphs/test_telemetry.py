"""OpenTelemetry spans of one EHR QA run: the real graph, the real embedded FHIR server, a scripted model
and the SDK's in-memory exporter. The tree is run → nodes → model and tool calls, with GenAI attributes,
and no patient text leaves the process unless content capture is on."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from langchain_core.messages import BaseMessage
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clinicflow.agents.ehr_qa import FINISH_TOOL_NAME, citations_in
from clinicflow.fhir import FhirClient
from clinicflow.graphs.ehr_qa import EhrQaResult, build_ehr_qa_graph, run_ehr_qa
from clinicflow.graphs.telemetry import INSTRUMENTATION, SpanRecorder, span_json, tracer_provider
from clinicflow.tools import make_fhir_tools
from tests.fakes import ScriptedChatModel, calls, tool_call

pytestmark = pytest.mark.integration

QUESTION = "What was the patient's most recent body weight?"
WEIGHT = "29463-7"


def _facts(messages: list[BaseMessage]) -> object:
    lines = [line[2:] for m in messages for line in m.text.splitlines() if "[Observation/" in line]
    line = lines[0]
    return calls(tool_call("record_facts", facts=[{"text": line, "citations": citations_in(line)[:1]}]))


def _answer(messages: list[BaseMessage]) -> object:
    text = "\n".join(m.text for m in messages)
    cited = [c for c in citations_in(text) if c.startswith("Observation/")][:1]
    return calls(
        tool_call("final_answer", answer=f"The latest weight is recorded [{cited[0]}].", citations=cited)
    )


async def _run(
    fhir_client: FhirClient, patient: str, *, capture: bool
) -> tuple[EhrQaResult, Sequence[ReadableSpan]]:
    memory = InMemorySpanExporter()
    provider = tracer_provider(exporters=[memory])
    model = ScriptedChatModel(
        script=[
            calls(tool_call("search_record", resource_type="Observation", code=WEIGHT, limit=2)),
            calls(tool_call(FINISH_TOOL_NAME)),
            _facts,
            _answer,
        ]
    )
    graph = build_ehr_qa_graph(model, make_fhir_tools(fhir_client))
    recorder = SpanRecorder(
        provider.get_tracer(INSTRUMENTATION), workflow="ehr_qa", thread_id="t-1", capture_content=capture
    )
    result = await run_ehr_qa(graph, QUESTION, patient, thread_id="t-1", config={"callbacks": [recorder]})
    provider.shutdown()
    return result, memory.get_finished_spans()


def _exported_text(spans: Sequence[ReadableSpan]) -> str:
    """Everything an exporter sends: names, attributes, events and status descriptions."""
    return json.dumps(span_json(spans), default=str) + " ".join(
        f"{s.status.description} {[e.attributes for e in s.events]}" for s in spans
    )


async def test_one_run_is_one_span_tree_with_genai_attributes(
    fhir_client: FhirClient, patient_ids: list[str]
) -> None:
    result, spans = await _run(fhir_client, patient_ids[0], capture=False)
    assert result.status == "answered", result.render()

    roots = [s for s in spans if s.parent is None]
    assert [s.name for s in roots] == ["invoke_agent ehr_qa"]
    root = roots[0]
    assert root.attributes is not None
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.conversation.id"] == "t-1"
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}

    by_id = {s.context.span_id: s for s in spans}
    nodes = [s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id]
    assert {s.name for s in nodes} == {"plan", "retrieve", "extract", "answer"}
    assert all(s.attributes and s.attributes["langgraph.node"] == s.name for s in nodes)

    chats = [s for s in spans if s.name.startswith("chat")]
    tools = [s for s in spans if s.name.startswith("execute_tool")]
    assert len(chats) == 4, [s.name for s in spans]
    for span in [*chats, *tools]:
        assert span.parent is not None
        assert by_id[span.parent.span_id] in nodes, f"{span.name} hangs under a node"
    for chat in chats:
        attrs = chat.attributes or {}
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)
        assert attrs["clinicflow.thread.id"] == "t-1"
    names = {(s.attributes or {}).get("gen_ai.tool.name") for s in tools}
    assert {"record_manifest", "search_record"} <= names
    assert all((s.attributes or {})["gen_ai.operation.name"] == "execute_tool" for s in tools)
    searches = [s for s in tools if s.name == "execute_tool search_record"]
    assert by_id[searches[0].parent.span_id].name == "retrieve"  # type: ignore[union-attr]

    json_spans = span_json(spans)
    assert json_spans[0]["name"] == "invoke_agent ehr_qa"
    assert all(s["duration_ms"] >= 0 for s in json_spans)


async def test_no_patient_text_is_exported_unless_content_capture_is_on(
    fhir_client: FhirClient, patient_ids: list[str]
) -> None:
    patient = patient_ids[0]
    result, spans = await _run(fhir_client, patient, capture=False)
    evidence = [line.text for line in result.evidence]
    assert evidence, "the run retrieved record lines"
    private = [patient, QUESTION, result.answer, *evidence, *result.citations]
    exported = _exported_text(spans)
    leaked = [text for text in private if text in exported]
    assert leaked == [], f"patient data in spans without content capture: {leaked}"

    _, captured = await _run(fhir_client, patient, capture=True)
    exported = _exported_text(captured)
    assert QUESTION in exported and any(c in exported for c in result.citations)
    attributes = {k for s in captured for k in (s.attributes or {})}
    assert {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments"} <= attributes
    assert "gen_ai.tool.call.result" in attributes
    arguments = [
        json.loads(str(s.attributes["gen_ai.tool.call.arguments"]))
        for s in captured
        if s.attributes and "gen_ai.tool.call.arguments" in s.attributes
    ]
    assert arguments and all("patient_id" not in a for a in arguments), "injected arguments stay hidden"
