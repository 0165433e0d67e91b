"""The worker pool in-process with a real store and a small graph: events, interrupt and resume with the
recorded decision, cancel within a step, recovery of a run left running by a dead server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel
from langgraph.types import interrupt
from pydantic import BaseModel

from clinicflow.api.config import ApiSettings
from clinicflow.api.events import EventBus
from clinicflow.api.metrics import Metrics
from clinicflow.api.store import NewAudit, NewEvent, RunRow, Store, utcnow
from clinicflow.api.workers import WorkerPool
from clinicflow.api.workflows import Workflow, WorkflowDeps, WorkflowRegistry
from tests.fakes import ScriptedChatModel


class Input(BaseModel):
    patient_id: str
    pause_s: float = 0.0
    ask: bool = False


class State(TypedDict, total=False):
    patient_id: str
    pause_s: float
    ask: bool
    seen: list[str]
    decision: Any


def _graph(checkpointer: Any) -> Pregel:
    async def first(state: State) -> dict[str, Any]:
        await asyncio.sleep(state.get("pause_s", 0.0))
        return {"seen": ["first"]}

    async def second(state: State) -> dict[str, Any]:
        decision = interrupt({"write": "Observation"}) if state.get("ask") else None
        return {"seen": [*state["seen"], "second"], "decision": decision}

    builder = StateGraph(State)
    builder.add_node("first", first)
    builder.add_node("second", second)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    builder.add_edge("second", END)
    return builder.compile(checkpointer=checkpointer)


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[WorkerPool]:
    store = Store(f"sqlite:///{tmp_path}/store.sqlite")
    await store.init()
    saver = InMemorySaver()
    registry = WorkflowRegistry()

    async def build(deps: WorkflowDeps) -> Pregel:
        return _graph(deps.checkpointer)

    registry.register(Workflow(name="probe", description="test", input_model=Input, build=build))
    deps = WorkflowDeps(
        settings=ApiSettings(cache_dir=tmp_path), fhir=None, checkpointer=saver, load_model=ScriptedChatModel
    )
    workers = WorkerPool(
        store=store,
        registry=registry,
        deps=deps,
        bus=EventBus(),
        metrics=Metrics(),
        worker_id="w1",
        workers=2,
        max_queued=4,
        lease_s=30,
    )
    yield workers
    await workers.stop()
    await store.close()


async def _start(pool: WorkerPool, run_id: str, **data: Any) -> None:
    now = utcnow()
    row = RunRow(
        id=run_id,
        workflow="probe",
        status="queued",
        input={"patient_id": "p1", **data},
        patient_id="p1",
        principal="key:t:1",
        principal_kind="api_key",
        scopes=[],
        created_at=now,
        updated_at=now,
        owner=pool.worker_id,
        heartbeat_at=now,
        attempts=0,
        cancel_requested=False,
    )
    await pool.store.create_run(
        row, NewEvent("run.queued", {}), NewAudit(actor="key:t:1", actor_kind="api_key", action="run.create")
    )
    pool.submit(run_id)


async def _settled(pool: WorkerPool, run_id: str, statuses: set[str]) -> RunRow:
    for _ in range(200):
        run = await pool.store.get_run(run_id)
        if run is not None and run.status in statuses:
            return run
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} never reached {statuses}")


async def _types(pool: WorkerPool, run_id: str) -> list[str]:
    return [e.type for e in await pool.store.events_after(run_id, 0)]


async def test_a_run_streams_node_events_and_completes(pool: WorkerPool) -> None:
    await _start(pool, "r1")
    run = await _settled(pool, "r1", {"completed"})
    assert run.result is not None and run.result["seen"] == ["first", "second"]
    assert await _types(pool, "r1") == [
        "run.queued",
        "run.started",
        "node.started",
        "node.finished",
        "node.started",
        "node.finished",
        "run.finished",
    ]


async def test_interrupt_waits_then_resumes_with_the_recorded_decision(pool: WorkerPool) -> None:
    await _start(pool, "r2", ask=True)
    waiting = await _settled(pool, "r2", {"waiting_approval"})
    assert waiting.pending is not None and waiting.pending["request"] == {"write": "Observation"}
    assert waiting.owner is None
    await pool.store.record_decision(
        "r2",
        waiting.pending["interrupt_id"],
        {"action": "approve"},
        "key:t:1",
        owner="w1",
        events=[],
        audits=[],
    )
    pool.submit("r2", "approval")
    done = await _settled(pool, "r2", {"completed"})
    assert done.result is not None and done.result["decision"] == {"action": "approve"}
    assert (await _types(pool, "r2")).count("approval.required") == 1


async def test_cancel_stops_the_step_in_flight(pool: WorkerPool) -> None:
    await _start(pool, "r3", pause_s=30)
    for _ in range(100):
        if "node.started" in await _types(pool, "r3"):
            break
        await asyncio.sleep(0.02)
    assert pool.cancel_local("r3")
    run = await _settled(pool, "r3", {"cancelled"})
    assert run.result is None and (await _types(pool, "r3"))[-1] == "run.finished"


async def test_a_run_left_running_by_this_worker_id_is_resumed_at_start(pool: WorkerPool) -> None:
    now = utcnow()
    row = RunRow(
        id="r4",
        workflow="probe",
        status="running",
        input={"patient_id": "p1"},
        patient_id="p1",
        principal="key:t:1",
        principal_kind="api_key",
        scopes=[],
        created_at=now,
        updated_at=now,
        owner="w1",
        heartbeat_at=now,
        attempts=1,
        cancel_requested=False,
    )
    await pool.store.create_run(
        row, NewEvent("run.queued", {}), NewAudit(actor="x", actor_kind="api_key", action="a")
    )
    assert await pool.start(resume=True) == ["r4"]
    run = await _settled(pool, "r4", {"completed"})
    started = [e for e in await pool.store.events_after("r4", 0) if e.type == "run.started"]
    assert run.attempts == 2 and started[0].data["resumed"] is True
