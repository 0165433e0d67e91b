"""One runner for every compiled workflow: run, resume (after a crash, or with a reviewer's decision),
and the errors a run reports.

A run is checkpointed per `thread_id` when the graph has a checkpointer: running again with the same
thread id continues an interrupted run from its last finished step, or returns the finished one. A run
stopped at a write awaiting approval reports it (`pending`); `resume_workflow(..., decision)` continues
it. Cancelling is cancelling the awaiting task: the step in flight is abandoned, the checkpoint of the
last finished step stays, and a later resume continues from there.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, StateSnapshot
from pydantic import BaseModel

from clinicflow.fhir import FHIR_ID
from clinicflow.graphs.checkpoints import has_checkpointer, thread_config
from clinicflow.graphs.text import unstorable_character
from clinicflow.graphs.workflow import Graph, Workflow
from clinicflow.tools.write_tools import APPROVAL_REQUEST_KIND, parse_decision

__all__ = [
    "AWAITING_DECISION",
    "RunEnd",
    "RunError",
    "RunInputError",
    "RunStoppedError",
    "check_patient_id",
    "check_text",
    "next_input",
    "pending_approval",
    "resume_workflow",
    "run_end",
    "run_input",
    "run_workflow",
    "stream_run",
]


class RunError(Exception):
    """Base of the errors a run reports; none of them needs a traceback to be understood."""


class RunInputError(RunError, ValueError):
    """The input, thread id or decision cannot start or continue a run."""


class RunStoppedError(RunError):
    """A run stopped on an exception; resuming its thread continues it once the cause is fixed."""

    label = "workflow"

    def __init__(self, thread_id: str, cause: BaseException) -> None:
        super().__init__(f"{self.label} run {thread_id} stopped: {type(cause).__name__}: {cause}")
        self.thread_id = thread_id
        self.cause = cause


def check_text(error: type[Exception], name: str, text: str | None, *, required: bool = False) -> None:
    """Refuse text a run cannot keep (and, when `required`, empty text), naming the field."""
    if required and not text:
        raise error(f"the {name} is empty")
    if text and (reason := unstorable_character(text)) is not None:
        raise error(f"the {name} {reason}; remove it")


def check_patient_id(error: type[Exception], patient_id: str) -> None:
    """Refuse what is not a FHIR id."""
    if not FHIR_ID.match(patient_id):
        raise error(f"not a FHIR patient id: {patient_id!r}")


def pending_approval(interrupts: Any) -> dict[str, Any] | None:
    """The approval request a run stopped at, if any."""
    for item in interrupts or ():
        value = getattr(item, "value", None)
        if isinstance(value, Mapping) and value.get("kind") == APPROVAL_REQUEST_KIND:
            return dict(value)
    return None


AWAITING_DECISION: Final = object()
"""What `next_input` answers for a run stopped at an interrupt whose decision is not recorded yet."""


async def next_input(
    snapshot: StateSnapshot,
    start: Callable[[], Mapping[str, Any]],
    decision: Callable[[str], Awaitable[Any]],
) -> Any:
    """What to stream next on a run's thread, given its latest `snapshot`: `start()` (the initial state)
    for a new thread; at an interrupt, a `Command` resuming it with `decision(interrupt_id)`, or
    `AWAITING_DECISION` while that is None; else None: continue from the checkpoint (its saved task
    writes applied; a no-op when the graph already finished). An empty `next` alone does not mean
    finished: a step whose tasks all saved their writes before a crash has no next task until those
    writes are applied."""
    if not snapshot.values and not snapshot.next:
        return start()
    if snapshot.interrupts:
        first = snapshot.interrupts[0]
        value = await decision(first.id)
        return AWAITING_DECISION if value is None else Command(resume={first.id: value})
    return None


@dataclass(frozen=True)
class RunEnd:
    """Where a run stopped: its state values, the write awaiting approval (if any), the interrupts it
    stopped at, and the nodes still to run (empty when the graph reached its end)."""

    values: dict[str, Any]
    pending: dict[str, Any] | None = None
    interrupts: tuple[Any, ...] = ()
    next: tuple[str, ...] = ()


STREAM_MODES: Final = ("values", "tasks", "updates", "custom")
"""What `stream_run` streams: state values, node starts and ends, node updates, and progress."""


async def run_end(
    graph: Graph, config: RunnableConfig, values: Mapping[str, Any] | None = None, interrupts: Any = ()
) -> RunEnd:
    """Read where a run stopped: from its checkpoint when the graph has a checkpointer (the streamed
    `values` on top), else from the streamed `values` and `interrupts` alone."""
    values = dict(values or {})
    if not has_checkpointer(graph):
        return RunEnd(values, pending_approval(interrupts), tuple(interrupts))
    snapshot = await graph.aget_state(config)
    return RunEnd(
        {**snapshot.values, **values},
        pending_approval(interrupts) or pending_approval(snapshot.interrupts),
        tuple(snapshot.interrupts),
        tuple(snapshot.next),
    )


async def stream_run(
    graph: Graph,
    payload: Any,
    config: RunnableConfig,
    on_chunk: Callable[[str, Any], Awaitable[bool]] | None = None,
    *,
    context: Any = None,
) -> RunEnd | None:
    """Stream `payload` through the graph (each step checkpointed before the next begins) and read where
    it stopped. `on_chunk(mode, chunk)` sees every chunk (modes: `STREAM_MODES`); it stops the stream by
    answering True, and then the answer is None. `context` is the run context (`graphs.limits`)."""
    values: dict[str, Any] = {}
    interrupts: tuple[Any, ...] = ()
    options: dict[str, Any] = {"durability": "sync"} if has_checkpointer(graph) else {}
    if context is not None:
        options["context"] = context
    async for mode, chunk in graph.astream(payload, config, stream_mode=list(STREAM_MODES), **options):
        if mode in ("values", "updates") and isinstance(chunk, Mapping) and "__interrupt__" in chunk:
            interrupts += tuple(chunk["__interrupt__"])
        elif mode == "values" and isinstance(chunk, Mapping):
            values = dict(chunk)
        if on_chunk is not None and await on_chunk(mode, chunk):
            return None
    return await run_end(graph, config, values, interrupts)


def _output(workflow: Workflow, thread_id: str, end: RunEnd) -> Any:
    if workflow.output is not None:
        return workflow.output(thread_id, end.values, end.pending)
    return workflow.result(thread_id, end.values)


async def _invoke(
    workflow: Workflow, graph: Graph, payload: Any, config: RunnableConfig, context: Any = None
) -> Any:
    thread_id = config["configurable"]["thread_id"]
    try:
        end = await stream_run(graph, payload, config, context=context)
    except RunError:
        raise
    except Exception as exc:
        if workflow.errors.run is None:
            raise
        raise workflow.errors.run(thread_id, exc) from exc
    assert end is not None  # no `on_chunk`: nothing stops the stream
    return _output(workflow, thread_id, end)


async def run_workflow(
    workflow: Workflow,
    graph: Graph,
    payload: Mapping[str, Any],
    *,
    thread_id: str | None = None,
    config: RunnableConfig | None = None,
    context: Any = None,
) -> Any:
    """Start a run from `payload` (its initial state); with a known `thread_id`, continue or return it.
    `context` is the run context, e.g. `RunLimits` (`graphs.limits`); a resumed run needs it again."""
    thread_id = thread_id or (config or {}).get("configurable", {}).get("thread_id") or uuid.uuid4().hex
    run_config = thread_config(config, thread_id)
    if has_checkpointer(graph):
        snapshot = await graph.aget_state(run_config)
        if snapshot.values:
            held = tuple(snapshot.values.get(k) for k in workflow.held)
            if held != tuple(payload.get(k) for k in workflow.held):
                shown = f"{held[1]}: {held[0]!r}" if len(held) == 2 else ", ".join(map(repr, held))
                raise workflow.errors.input(
                    f"thread {thread_id} holds another {workflow.subject} ({shown}); use a new thread id"
                )
            return await resume_workflow(workflow, graph, thread_id, config=config, context=context)
    return await _invoke(workflow, graph, dict(payload), run_config, context)


async def run_input(
    workflow: Workflow,
    graph: Graph,
    data: BaseModel,
    *,
    thread_id: str | None = None,
    config: RunnableConfig | None = None,
    context: Any = None,
) -> Any:
    """Start a run from a validated Input model."""
    return await run_workflow(
        workflow, graph, workflow.initial_state(data), thread_id=thread_id, config=config, context=context
    )


async def resume_workflow(
    workflow: Workflow,
    graph: Graph,
    thread_id: str,
    decision: Any = None,
    *,
    config: RunnableConfig | None = None,
    context: Any = None,
) -> Any:
    """Continue a run: with a decision when a write awaits approval, without one after a crash."""
    error = workflow.errors.input
    if not has_checkpointer(graph):
        raise error("this graph has no checkpointer, so there is nothing to resume")
    run_config = thread_config(config, thread_id)
    snapshot = await graph.aget_state(run_config)
    if not snapshot.values:
        raise error(f"no checkpointed run under thread id {thread_id!r}")
    pending = pending_approval(snapshot.interrupts)
    if pending is None and decision is not None:
        raise error(f"thread {thread_id} has no write awaiting approval")

    async def given(_interrupt_id: str) -> Any:
        if decision is None:
            return None
        try:
            return parse_decision(decision).model_dump(mode="json")
        except ValueError as exc:
            raise error(str(exc)) from None

    payload = await next_input(snapshot, dict, given)  # `dict` is never called: the thread has values
    if payload is AWAITING_DECISION or (payload is None and not snapshot.next):
        return _output(workflow, thread_id, RunEnd(dict(snapshot.values), pending))
    return await _invoke(workflow, graph, payload, run_config, context)
