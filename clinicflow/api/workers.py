"""The bounded worker pool that executes runs, streams their progress and survives crashes.

A run executes as an asyncio task holding one of `api_workers` slots. Before executing it takes the run's
lease in the store (`Store.claim`), renewed by a heartbeat; a run whose lease lapses (its server died) is
taken over by any server's reaper, and a restarted server with the same worker id resumes its own runs at
once. Execution always continues from the run's last LangGraph checkpoint, and a pending approval is
resumed with the recorded decision, so a crash repeats at most the step that was in flight. Cancel stops
a local run at once (the step in flight is abandoned) and a run on another replica at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from opentelemetry import trace
from opentelemetry.trace import Tracer

from clinicflow.api.audit import audit_scope, provenance
from clinicflow.api.events import (
    ANSWER,
    APPROVAL_REQUIRED,
    NODE_FINISHED,
    NODE_STARTED,
    PROGRESS,
    RUN_FINISHED,
    RUN_STARTED,
    EventBus,
)
from clinicflow.api.metrics import Metrics
from clinicflow.api.run_observer import RunContext, RunObserver
from clinicflow.api.store import NewEvent, RunRow, Store, utcnow
from clinicflow.api.workflows import Workflow, WorkflowDeps, WorkflowRegistry, jsonable
from clinicflow.graphs.runner import AWAITING_DECISION, RunEnd, next_input, run_end, stream_run
from clinicflow.graphs.telemetry import INSTRUMENTATION, SpanRecorder
from clinicflow.graphs.workflow import Graph

__all__ = ["QueueFullError", "RunContext", "RunObserver", "WorkerPool"]

log = logging.getLogger(__name__)

StartReason = Literal["new", "approval", "recovery", "resume"]


class QueueFullError(RuntimeError):
    """Every worker slot is busy and the queue is full; retry later."""


class _LostLease(Exception):
    """Another server took over the run (this one missed its heartbeats)."""


class WorkerPool:
    """Executes runs on at most `workers` asyncio tasks at once, with leases, heartbeats and recovery."""

    def __init__(
        self,
        *,
        store: Store,
        registry: WorkflowRegistry,
        deps: WorkflowDeps,
        bus: EventBus,
        metrics: Metrics,
        worker_id: str,
        workers: int,
        max_queued: int,
        lease_s: float,
        tracer: Tracer | None = None,
    ) -> None:
        self.store = store
        self.tracer = tracer or trace.get_tracer(INSTRUMENTATION)
        self.registry = registry
        self.deps = deps
        self.bus = bus
        self.metrics = metrics
        self.worker_id = worker_id
        self.workers = workers
        self.max_queued = max_queued
        self.lease_s = lease_s
        self._slots = asyncio.Semaphore(workers)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancels: dict[str, asyncio.Event] = {}
        self._background: list[asyncio.Task[None]] = []
        self._executing = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, *, resume: bool) -> list[str]:
        """Start heartbeats and the reaper; with `resume`, resume this worker's interrupted runs now."""
        resumed: list[str] = []
        if resume:
            for run_id in await self.store.orphaned_runs(self.worker_id, self.lease_s, own=True):
                if await self.recover(run_id):
                    resumed.append(run_id)
        self._background = [
            asyncio.create_task(self._heartbeat_loop(), name="clinicflow-heartbeat"),
            asyncio.create_task(self._reaper_loop(), name="clinicflow-reaper"),
        ]
        return resumed

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop taking work, cancel running executions, and hand their runs back as interrupted."""
        for task in self._background:
            task.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.store.release(self.worker_id)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.store.heartbeat(self.worker_id)
            except Exception:
                log.exception("heartbeat failed")

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 2)
            try:
                for run_id in await self.store.orphaned_runs(self.worker_id, self.lease_s, own=False):
                    if run_id not in self._tasks:
                        await self.recover(run_id)
            except QueueFullError:
                continue
            except Exception:
                log.exception("reaper failed")

    # -- submission -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Runs held by this process: executing or waiting for a slot."""
        return len(self._tasks)

    def has_room(self) -> bool:
        return len(self._tasks) < self.workers + self.max_queued

    def submit(self, run_id: str, reason: StartReason = "new") -> bool:
        """Queue a run for execution here; False when it is already here. `QueueFullError` when full."""
        if run_id in self._tasks:
            return False
        if not self.has_room():
            raise QueueFullError(f"{self.pending} runs are queued or executing on this server")
        self._cancels[run_id] = asyncio.Event()
        task = asyncio.create_task(self._run(run_id, reason), name=f"clinicflow-run-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._forget(run_id))
        return True

    def _forget(self, run_id: str) -> None:
        self._tasks.pop(run_id, None)
        self._cancels.pop(run_id, None)

    def cancel_local(self, run_id: str) -> bool:
        """Stop a run executing (or queued) in this process; True when it was here."""
        event = self._cancels.get(run_id)
        if event is None:
            return False
        event.set()
        return True

    async def recover(self, run_id: str) -> bool:
        """Resume an orphaned run (or finish its cancellation); False when it needs nothing."""
        run = await self.store.get_run(run_id)
        if run is None:
            return False
        if run.cancel_requested:
            await self._finish(
                run, "cancelled", owner=None, from_statuses=("queued", "running", "interrupted")
            )
            return False
        self.metrics.runs_resumed.inc()
        return self.submit(run_id, "recovery")

    def _spans(self, run: RunRow) -> SpanRecorder:
        capture = self.deps.settings.otel_capture_content
        return SpanRecorder(
            self.tracer, workflow=run.workflow, run_id=run.id, thread_id=run.id, capture_content=capture
        )

    # -- execution ------------------------------------------------------------------------------

    async def _run(self, run_id: str, reason: StartReason) -> None:
        self.metrics.runs_waiting.inc()
        try:
            async with self._slots:
                self.metrics.runs_waiting.dec()
                self.metrics.runs_executing.inc()
                try:
                    await self._execute(run_id, reason)
                finally:
                    self.metrics.runs_executing.dec()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run %s: unexpected error in the worker", run_id)

    async def _execute(self, run_id: str, reason: StartReason) -> None:
        if self._cancels.get(run_id, asyncio.Event()).is_set():
            return
        run = await self.store.claim(run_id, self.worker_id, self.lease_s)
        if run is None:
            return
        workflow = self.registry.get(run.workflow)
        ctx = RunContext(run, self.store, self.bus)
        config: RunnableConfig = {
            "configurable": {"thread_id": run.id},
            "callbacks": [RunObserver(ctx, self.metrics, workflow.hidden_args), self._spans(run)],
        }
        with audit_scope(ctx.scope):
            try:
                graph = await self.registry.graph(run.workflow, self.deps)
                payload = await self._payload(graph, config, run, workflow)
                ctx.emit(
                    RUN_STARTED,
                    {
                        "attempt": run.attempts,
                        "reason": reason,
                        "resumed": reason in ("recovery", "resume"),
                        "worker": self.worker_id,
                    },
                )
                if reason in ("recovery", "resume"):
                    ctx.scope.audit("run.resume", attempt=run.attempts, reason=reason)
                await ctx.flush()
                if payload is AWAITING_DECISION:
                    end: RunEnd | None = await run_end(graph, config)
                else:
                    end = await self._stream(graph, payload, config, ctx)
                if end is None:
                    await self._finish(run, "cancelled", ctx=ctx)
                    return
                await self._settle(end, run, workflow, ctx)
            except _LostLease:
                log.warning("run %s: lease lost to another server; stopping here", run_id)
                await ctx.flush()
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.shield(ctx.flush())
                raise
            except Exception as exc:
                log.warning("run %s failed: %s: %s", run_id, type(exc).__name__, exc)
                await self._finish(run, "failed", ctx=ctx, error=f"{type(exc).__name__}: {exc}")

    async def _settle(self, end: RunEnd, run: RunRow, workflow: Workflow, ctx: RunContext) -> None:
        """Where the run stopped: wait for an approval, or store the result (with provenance for an
        answer)."""
        if end.interrupts:
            await self._wait_for_approval(run, ctx, end.interrupts)
            return
        if end.next:
            raise RuntimeError(f"the graph stopped before its end; next: {', '.join(end.next)}")
        result = workflow.result(run.id, end.values)
        citations = result.get("citations")
        if isinstance(citations, list) and "answer" in result:
            result["provenance"] = provenance(
                run.id, run.workflow, run.principal, [str(c) for c in citations]
            )
            answer = {"answer": result.get("answer"), "citations": citations, "status": result.get("status")}
            ctx.emit(ANSWER, answer)
        await self._finish(run, "completed", ctx=ctx, result=result)

    async def _payload(self, graph: Graph, config: RunnableConfig, run: RunRow, workflow: Workflow) -> Any:
        """What to stream (`graphs.runner.next_input`), with the decision recorded in the store."""

        async def decision(interrupt_id: str) -> Any:
            row = await self.store.decision_for(run.id, interrupt_id)
            return None if row is None else row.decision

        def start() -> dict[str, Any]:
            return workflow.initial_state(workflow.input_model.model_validate(run.input))

        return await next_input(await graph.aget_state(config), start, decision)

    async def _stream(
        self, graph: Graph, payload: Any, config: RunnableConfig, ctx: RunContext
    ) -> RunEnd | None:
        """Stream the graph (`graphs.runner.stream_run`), turning chunks into events; None when the run
        was cancelled."""
        cancel = self._cancels.get(ctx.run_id) or asyncio.Event()

        async def on_chunk(mode: str, chunk: Any) -> bool:
            self._translate(ctx, mode, chunk)
            if mode == "values" or (mode == "tasks" and "input" not in chunk):
                return False
            await ctx.flush()
            if mode == "updates":
                requested, owner = await self.store.control(ctx.run_id)
                if requested:
                    return True
                if owner != self.worker_id:
                    raise _LostLease
            return False

        runner = asyncio.create_task(stream_run(graph, payload, config, on_chunk))
        stopper = asyncio.create_task(cancel.wait())
        try:
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            runner.cancel()
            stopper.cancel()
            raise
        if runner in done:
            stopper.cancel()
            return runner.result()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        return None

    @staticmethod
    def _translate(ctx: RunContext, mode: str, chunk: Any) -> None:
        if mode == "tasks" and isinstance(chunk, dict):
            if "input" in chunk:
                ctx.emit(NODE_STARTED, {"node": chunk.get("name"), "task_id": chunk.get("id")})
            else:
                error = chunk.get("error")
                result = chunk.get("result")
                ctx.emit(
                    NODE_FINISHED,
                    {
                        "node": chunk.get("name"),
                        "task_id": chunk.get("id"),
                        "error": f"{type(error).__name__}: {error}" if error else None,
                        "interrupted": bool(chunk.get("interrupts")),
                        "updated": sorted(result) if isinstance(result, dict) else [],
                    },
                )
        elif mode == "custom":
            ctx.emit(PROGRESS, {"data": jsonable(chunk)})

    async def _wait_for_approval(self, run: RunRow, ctx: RunContext, interrupts: Sequence[Any]) -> None:
        first = interrupts[0]
        pending = {"interrupt_id": first.id, "request": jsonable(first.value), "count": len(interrupts)}
        ctx.emit(APPROVAL_REQUIRED, pending)
        events, audits = ctx.take()
        updated = await self.store.transition(
            run.id,
            from_statuses=("running",),
            owner=self.worker_id,
            values={"status": "waiting_approval", "pending": pending, "owner": None},
            events=events,
            audits=audits,
        )
        if updated is not None:
            self.bus.notify(run.id)

    async def _finish(
        self,
        run: RunRow,
        status: Literal["completed", "failed", "cancelled"],
        *,
        ctx: RunContext | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        owner: str | Literal[False] | None = False,
        from_statuses: Sequence[str] = ("running",),
    ) -> None:
        """Store the run's end, its last events and audit rows atomically (only if this server still
        owns it), and count it."""
        events, audits = ctx.take() if ctx is not None else ([], [])
        events.append(NewEvent(RUN_FINISHED, {"status": status, "error": error}))
        values: dict[str, Any] = {
            "status": status,
            "finished_at": utcnow(),
            "owner": None,
            "pending": None,
            "error": error,
        }
        if result is not None:
            values["result"] = result
        updated = await self.store.transition(
            run.id,
            from_statuses=from_statuses,
            owner=self.worker_id if owner is False else owner,
            values=values,
            events=events,
            audits=audits,
        )
        if updated is None:
            return
        self.bus.notify(run.id)
        self.metrics.runs_finished.labels(run.workflow, status).inc()
        self.metrics.run_seconds.labels(run.workflow).observe((utcnow() - run.created_at).total_seconds())
