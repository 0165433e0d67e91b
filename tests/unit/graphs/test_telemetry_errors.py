"""Failed model and tool calls in spans: status ERROR and the error type, the message only with content
capture on (an error message can quote the record)."""

from __future__ import annotations

from uuid import uuid4

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from clinicflow.graphs.telemetry import INSTRUMENTATION, SpanRecorder, tracer_provider


@pytest.mark.parametrize("capture", [False, True])
def test_a_failed_call_is_an_error_span_that_names_its_type(capture: bool) -> None:
    memory = InMemorySpanExporter()
    recorder = SpanRecorder(
        tracer_provider(exporters=[memory]).get_tracer(INSTRUMENTATION),
        workflow="ehr_qa",
        capture_content=capture,
    )
    root, node, chat, tool = uuid4(), uuid4(), uuid4(), uuid4()
    recorder.on_chain_start({}, {}, run_id=root, name="LangGraph")
    recorder.on_chain_start(
        {}, {}, run_id=node, parent_run_id=root, name="plan", metadata={"langgraph_node": "plan"}
    )
    recorder.on_chat_model_start({}, [[]], run_id=chat, parent_run_id=node)
    recorder.on_llm_error(TimeoutError("Patient/p-123 took too long"), run_id=chat)
    recorder.on_tool_start(
        {"name": "search_record"}, "", run_id=tool, parent_run_id=node, inputs={"code": "x"}
    )
    recorder.on_tool_error(ValueError("no such code for Patient/p-123"), run_id=tool)
    recorder.on_chain_error(RuntimeError("stopped"), run_id=node)
    recorder.on_chain_end({}, run_id=root)

    spans = {s.name: s for s in memory.get_finished_spans()}
    assert set(spans) == {"invoke_agent ehr_qa", "plan", "chat", "execute_tool search_record"}
    for name, kind in (
        ("chat", "TimeoutError"),
        ("execute_tool search_record", "ValueError"),
        ("plan", "RuntimeError"),
    ):
        span = spans[name]
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == kind
        assert ("p-123" in (span.status.description or "")) is (capture and name != "plan")
    assert spans["invoke_agent ehr_qa"].status.status_code is StatusCode.UNSET
