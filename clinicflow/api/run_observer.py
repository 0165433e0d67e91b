"""What one run's execution records: its events and audit rows (buffered and stored per step), and the
callback observer that turns model and tool callbacks into events, audit rows and metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from clinicflow.api.audit import AuditScope, cited_references
from clinicflow.api.events import MODEL_TOKENS, TOOL_CALL, TOOL_RESULT, EventBus
from clinicflow.api.metrics import Metrics
from clinicflow.api.store import NewAudit, NewEvent, RunRow, Store
from clinicflow.api.workflows import jsonable

__all__ = ["RunContext", "RunObserver"]

_MAX_SUMMARY = 240


class RunContext:
    """One execution of one run: buffers its events and audit rows and stores them together per step."""

    def __init__(self, run: RunRow, store: Store, bus: EventBus) -> None:
        self.run_id = run.id
        self.workflow = run.workflow
        self.store = store
        self.bus = bus
        self._events: list[NewEvent] = []
        self._audits: list[NewAudit] = []
        self._lock = asyncio.Lock()
        self.scope = AuditScope(
            actor=run.principal,
            actor_kind=run.principal_kind,
            record=self._record,
            flush=self.flush,
            run_id=run.id,
            patient_id=run.patient_id,
            workflow=run.workflow,
        )

    def _record(self, row: NewAudit) -> None:
        self._audits.append(row)

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        """Buffer an event; it is stored and announced at the next flush."""
        self._events.append(NewEvent(type=type_, data=data))

    def take(self) -> tuple[list[NewEvent], list[NewAudit]]:
        """Hand over (and clear) the buffered events and audit rows."""
        events, audits = self._events, self._audits
        self._events, self._audits = [], []
        return events, audits

    async def flush(self) -> None:
        """Store buffered events and audit rows in one transaction, then wake the run's streams."""
        async with self._lock:
            events, audits = self.take()
            if not events and not audits:
                return
            await self.store.append(self.run_id, events, audits)
        if events:
            self.bus.notify(self.run_id)


def _summary(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= _MAX_SUMMARY else first[: _MAX_SUMMARY - 1] + "…"


class RunObserver(AsyncCallbackHandler):
    """Turns one run's model and tool callbacks into events, audit rows and metrics."""

    def __init__(self, ctx: RunContext, metrics: Metrics, hidden_args: frozenset[str]) -> None:
        self.ctx = ctx
        self.metrics = metrics
        self.hidden_args = hidden_args
        """The workflow's tool arguments that come from the graph: never in events or audit rows."""
        self._models: dict[UUID, tuple[float, str | None]] = {}
        self._tools: dict[UUID, tuple[float, str, dict[str, Any]]] = {}

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._models[run_id] = (time.perf_counter(), (metadata or {}).get("langgraph_node"))

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        started, node = self._models.pop(run_id, (time.perf_counter(), None))
        usage: dict[str, Any] = {}
        for generations in response.generations:
            for generation in generations:
                if isinstance(generation, ChatGeneration):
                    usage = dict(getattr(generation.message, "usage_metadata", None) or {})
        tokens_in = int(usage.get("input_tokens") or 0)
        tokens_out = int(usage.get("output_tokens") or 0)
        self.metrics.model_calls.labels(self.ctx.workflow).inc()
        self.metrics.model_tokens.labels(self.ctx.workflow, "input").inc(tokens_in)
        self.metrics.model_tokens.labels(self.ctx.workflow, "output").inc(tokens_out)
        self.ctx.emit(
            MODEL_TOKENS,
            {
                "node": node,
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        _, node = self._models.pop(run_id, (0.0, None))
        self.ctx.emit(MODEL_TOKENS, {"node": node, "error": f"{type(error).__name__}: {error}"})

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = str(serialized.get("name") or kwargs.get("name") or "tool")
        args = jsonable({k: v for k, v in (inputs or {}).items() if k not in self.hidden_args})
        self._tools[run_id] = (time.perf_counter(), name, args)
        self.ctx.emit(TOOL_CALL, {"tool": name, "args": args})

    def _tool_done(self, run_id: UUID, text: str, error: str | None) -> None:
        started, name, args = self._tools.pop(run_id, (time.perf_counter(), "tool", {}))
        refs = [] if error else cited_references(text)
        lines = [line for line in text.splitlines() if line.strip()]
        outcome = "failure" if error else "success"
        self.metrics.tool_calls.labels(name, outcome).inc()
        self.ctx.emit(
            TOOL_RESULT,
            {
                "tool": name,
                "summary": _summary(error or text),
                "lines": len(lines),
                "references": refs[:50],
                "error": error,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        self.ctx.scope.audit("tool.call", outcome=outcome, resources=refs, tool=name, args=args, error=error)

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if isinstance(output, ToolMessage):
            text = str(output.text)
            error = _summary(text) if output.status == "error" else None
        else:
            text = output if isinstance(output, str) else str(output)
            error = None
        self._tool_done(run_id, text, error)

    async def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._tool_done(run_id, "", f"{type(error).__name__}: {error}")
