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
from typing import Any, Final

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import Command, StateSnapshot
from pydantic import BaseModel

from clinicflow.fhir import FHIR_ID
from clinicflow.graphs.checkpoints import has_checkpointer, thread_config
from clinicflow.graphs.text import unstorable_character
from clinicflow.graphs.workflow import Workflow
from clinicflow.tools.write_tools import APPROVAL_REQUEST_KIND, parse_decision

__all__ = [
    "AWAITING_DECISION",
    "RunError",
    "RunInputError",
    "RunStoppedError",
    "check_patient_id",
    "check_text",
    "next_input",
    "pending_approval",
    "resume_workflow",
    "run_input",
    "run_workflow",
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


def _output(
    workflow: Workflow, thread_id: str, values: Mapping[str, Any], pending: dict[str, Any] | None
) -> Any:
    if workflow.output is not None:
        return workflow.output(thread_id, values, pending)
    return workflow.result(thread_id, values)


async def _invoke(workflow: Workflow, graph: Pregel, payload: Any, config: RunnableConfig) -> Any:
    thread_id = config["configurable"]["thread_id"]
    try:
        values = await graph.ainvoke(payload, config)
    except RunError:
        raise
    except Exception as exc:
        if workflow.errors.run is None:
            raise
        raise workflow.errors.run(thread_id, exc) from exc
    values = dict(values)
    pending = pending_approval(values.pop("__interrupt__", None))
    if has_checkpointer(graph):
        snapshot = await graph.aget_state(config)
        values = {**snapshot.values, **values}
        pending = pending or pending_approval(snapshot.interrupts)
    return _output(workflow, thread_id, values, pending)


async def run_workflow(
    workflow: Workflow,
    graph: Pregel,
    payload: Mapping[str, Any],
    *,
    thread_id: str | None = None,
    config: RunnableConfig | None = None,
) -> Any:
    """Start a run from `payload` (its initial state); with a known `thread_id`, continue or return it."""
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
            return await resume_workflow(workflow, graph, thread_id, config=config)
    return await _invoke(workflow, graph, dict(payload), run_config)


async def run_input(
    workflow: Workflow,
    graph: Pregel,
    data: BaseModel,
    *,
    thread_id: str | None = None,
    config: RunnableConfig | None = None,
) -> Any:
    """Start a run from a validated Input model."""
    return await run_workflow(
        workflow, graph, workflow.initial_state(data), thread_id=thread_id, config=config
    )


async def resume_workflow(
    workflow: Workflow,
    graph: Pregel,
    thread_id: str,
    decision: Any = None,
    *,
    config: RunnableConfig | None = None,
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
        return _output(workflow, thread_id, snapshot.values, pending)
    return await _invoke(workflow, graph, payload, run_config)
