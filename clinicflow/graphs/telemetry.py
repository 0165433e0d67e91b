"""OpenTelemetry spans for a workflow run: run → graph nodes → model calls and tool calls.

`SpanRecorder` is a LangChain callback handler: pass it in a run's `callbacks` and every run of the
graph becomes one span tree. Attributes follow the OpenTelemetry GenAI semantic conventions (model,
token counts, tool name, finish reasons) plus the run and thread ids. By default no patient data
leaves the process: no messages, tool arguments, tool results, patient ids or error messages, only
names, counts, timings and error types. `capture_content=True` adds the content attributes.

`tracer_provider(...)` builds the SDK provider the API and CLI share: OTLP/HTTP export when an
endpoint is set, and any extra exporter (an in-memory one for tests and `ask --trace-json`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langgraph.errors import GraphInterrupt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from clinicflow.graphs.hidden_args import RUNTIME_ARGS

__all__ = ["INSTRUMENTATION", "SpanRecorder", "span_json", "tracer_provider"]

INSTRUMENTATION = "clinicflow"


def tracer_provider(
    service_name: str = "clinicflow",
    *,
    otlp_endpoint: str | None = None,
    exporters: Sequence[SpanExporter] = (),
) -> TracerProvider:
    """An SDK provider exporting over OTLP/HTTP to `otlp_endpoint` (a collector's base URL, e.g.
    http://collector:4318) in batches, and synchronously to each of `exporters`."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _messages(batches: list[list[BaseMessage]]) -> str:
    return _json([{"role": m.type, "content": m.text} for batch in batches for m in batch])


class SpanRecorder(BaseCallbackHandler):
    """One span tree per graph run: `invoke_agent {workflow}` → `{node}` → `chat {model}` /
    `execute_tool {tool}`. Spans parent explicitly by LangChain's run ids, so concurrent runs and
    tasks never mix."""

    run_inline = True  # called in order on the caller's thread, so spans open and close in order

    def __init__(
        self,
        tracer: trace.Tracer,
        *,
        workflow: str,
        run_id: str | None = None,
        thread_id: str | None = None,
        capture_content: bool = False,
    ) -> None:
        self.tracer = tracer
        self.workflow = workflow
        self.run_id = run_id
        self.thread_id = thread_id
        self.capture_content = capture_content
        self._spans: dict[UUID, Span] = {}
        self._parents: dict[UUID, UUID | None] = {}

    # -- span bookkeeping --------------------------------------------------------------------

    def _parent_span(self, parent_run_id: UUID | None) -> Span | None:
        while parent_run_id is not None:
            if parent_run_id in self._spans:
                return self._spans[parent_run_id]
            parent_run_id = self._parents.get(parent_run_id)
        return None

    def _open(
        self, run_id: UUID, parent_run_id: UUID | None, name: str, kind: SpanKind, attributes: dict[str, Any]
    ) -> None:
        parent = self._parent_span(parent_run_id)
        ctx = trace.set_span_in_context(parent) if parent else otel_context.get_current()
        ids = {"clinicflow.run.id": self.run_id, "clinicflow.thread.id": self.thread_id}
        attributes = {**{k: v for k, v in ids.items() if v}, **attributes}
        self._spans[run_id] = self.tracer.start_span(name, context=ctx, kind=kind, attributes=attributes)

    def _close(
        self, run_id: UUID, error: BaseException | None = None, attributes: Mapping[str, Any] | None = None
    ) -> None:
        if isinstance(error, GraphInterrupt):  # a pause for approval, not a failure: mark the whole path
            ancestor: UUID | None = run_id
            while ancestor is not None:
                if ancestor in self._spans:
                    self._spans[ancestor].set_attribute("clinicflow.interrupted", True)
                ancestor = self._parents.get(ancestor)
            error = None
        self._parents.pop(run_id, None)
        span = self._spans.pop(run_id, None)
        if span is None:
            return
        span.set_attributes({k: v for k, v in (attributes or {}).items() if v is not None})
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, str(error) if self.capture_content else None))
        span.end()

    # -- the run and its nodes ---------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._parents[run_id] = parent_run_id
        metadata = metadata or {}
        node = metadata.get("langgraph_node")
        if parent_run_id is None:
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": self.workflow,
            }
            if self.thread_id:
                attributes["gen_ai.conversation.id"] = self.thread_id
            self._open(run_id, None, f"invoke_agent {self.workflow}", SpanKind.INTERNAL, attributes)
        elif node and name == node and not str(node).startswith("__"):
            step = metadata.get("langgraph_step")
            attributes = {
                "langgraph.node": str(node),
                **({"langgraph.step": int(step)} if step is not None else {}),
            }
            self._open(run_id, parent_run_id, str(node), SpanKind.INTERNAL, attributes)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, error)

    # -- model calls -------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        invocation_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._parents[run_id] = parent_run_id
        metadata = metadata or {}
        params = invocation_params or {}
        path = str(params.get("model_path") or "")
        model = str(metadata.get("ls_model_name") or params.get("model") or Path(path).name or "")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": str(metadata.get("ls_provider") or params.get("_type") or "clinicflow"),
        }
        if model:
            attributes["gen_ai.request.model"] = model
        for key, attribute in (
            ("max_new_tokens", "gen_ai.request.max_tokens"),
            ("temperature", "gen_ai.request.temperature"),
        ):
            value = metadata.get(f"ls_{key}") if key == "temperature" else params.get(key)
            if isinstance(value, int | float):
                attributes[attribute] = value
        if self.capture_content:
            attributes["gen_ai.input.messages"] = _messages(messages)
        self._open(run_id, parent_run_id, f"chat {model}".strip(), SpanKind.CLIENT, attributes)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        replies = [
            g.message
            for gs in response.generations
            for g in gs
            if isinstance(g, ChatGeneration) and isinstance(g.message, AIMessage)
        ]
        usage = next((dict(m.usage_metadata) for m in reversed(replies) if m.usage_metadata), {})
        meta = [m.response_metadata or {} for m in replies]
        finish = [
            str(md.get("finish_reason") or ("tool_calls" if m.tool_calls else "stop"))
            for m, md in zip(replies, meta, strict=True)
        ]
        outputs = [{"role": "assistant", "content": m.text, "tool_calls": m.tool_calls} for m in replies]
        attributes = {
            "gen_ai.response.model": next((md["model_name"] for md in meta if md.get("model_name")), None),
            "gen_ai.usage.input_tokens": usage.get("input_tokens"),
            "gen_ai.usage.output_tokens": usage.get("output_tokens"),
            "gen_ai.response.finish_reasons": finish or None,
            "gen_ai.output.messages": _json(outputs) if self.capture_content else None,
        }
        self._close(run_id, attributes=attributes)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, error)

    # -- tool calls --------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._parents[run_id] = parent_run_id
        tool = str(name or (serialized or {}).get("name") or "tool")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.type": "function",
        }
        call_id = kwargs.get("tool_call_id")
        if call_id:
            attributes["gen_ai.tool.call.id"] = str(call_id)
        if self.capture_content:
            shown = {k: v for k, v in (inputs or {}).items() if k not in RUNTIME_ARGS}
            attributes["gen_ai.tool.call.arguments"] = _json(shown)
        self._open(run_id, parent_run_id, f"execute_tool {tool}", SpanKind.INTERNAL, attributes)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        text = getattr(output, "text", output)
        status = getattr(output, "status", "success")
        result = str(text) if self.capture_content else None
        span = self._spans.get(run_id)
        if span is not None and status == "error":
            span.set_attribute("error.type", "tool_error")
            span.set_status(Status(StatusCode.ERROR, result))
        self._close(run_id, attributes={"gen_ai.tool.call.result": result})

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, error)


def span_json(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    """Finished spans as plain JSON, oldest first: what `clinicflow ask --trace-json` prints."""
    out = []
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        ctx = span.get_span_context()
        start, end = span.start_time or 0, span.end_time or 0
        out.append(
            {
                "name": span.name,
                "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
                "span_id": f"{ctx.span_id:016x}" if ctx else None,
                "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                "kind": span.kind.name,
                "start_unix_ns": start,
                "duration_ms": round((end - start) / 1e6, 2),
                "status": span.status.status_code.name,
                "attributes": {
                    k: (list(v) if isinstance(v, tuple) else v) for k, v in (span.attributes or {}).items()
                },
            }
        )
    return out
