"""The run store on SQLite: leases (claim, heartbeat, takeover), event numbering, idempotency, decisions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from clinicflow.api.store import DuplicateDecisionError, NewAudit, NewEvent, RunRow, Store, utcnow


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    found = Store(f"sqlite:///{tmp_path}/store.sqlite")
    await found.init()
    yield found
    await found.close()


def _row(run_id: str, *, owner: str | None = "a", key: str | None = None) -> RunRow:
    now = utcnow()
    return RunRow(
        id=run_id,
        workflow="ehr_qa",
        status="queued",
        input={"question": "q", "patient_id": "p1"},
        patient_id="p1",
        principal="key:test:1",
        principal_kind="api_key",
        scopes=["read"],
        idempotency_key=key,
        created_at=now,
        updated_at=now,
        owner=owner,
        heartbeat_at=now,
        attempts=0,
        cancel_requested=False,
    )


async def _create(store: Store, run_id: str, **kwargs: object) -> RunRow:
    audit = NewAudit(actor="key:test:1", actor_kind="api_key", action="run.create", run_id=run_id)
    row, created = await store.create_run(_row(run_id, **kwargs), NewEvent("run.queued", {}), audit)  # type: ignore[arg-type]
    assert created
    return row


async def _age_heartbeat(store: Store, run_id: str, seconds: float) -> None:
    async with store._write() as session:
        await session.execute(
            update(RunRow)
            .where(RunRow.id == run_id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=seconds))
        )


async def test_a_live_lease_is_not_taken_but_a_lapsed_one_is(store: Store) -> None:
    await _create(store, "r1")
    claimed = await store.claim("r1", "a", lease_s=30)
    assert claimed is not None and claimed.status == "running" and claimed.attempts == 1
    assert await store.claim("r1", "b", lease_s=30) is None
    assert await store.orphaned_runs("b", 30, own=False) == []
    assert await store.orphaned_runs("a", 30, own=True) == ["r1"]

    await _age_heartbeat(store, "r1", 60)
    assert await store.orphaned_runs("b", 30, own=False) == ["r1"]
    taken = await store.claim("r1", "b", lease_s=30)
    assert taken is not None and taken.owner == "b" and taken.attempts == 2
    assert await store.heartbeat("b") == 1 and await store.heartbeat("a") == 0


async def test_finished_and_cancel_flagged_runs_are_not_claimed(store: Store) -> None:
    await _create(store, "r2")
    await store.transition("r2", from_statuses=("queued",), values={"status": "completed", "owner": None})
    assert await store.claim("r2", "a", lease_s=30) is None
    await _create(store, "r3")
    assert await store.request_cancel("r3")
    assert await store.claim("r3", "a", lease_s=30) is None


async def test_events_are_numbered_without_gaps_and_release_marks_interrupted(store: Store) -> None:
    await _create(store, "r4")
    await store.claim("r4", "a", lease_s=30)
    last = await store.append("r4", [NewEvent("node.started", {"n": 1}), NewEvent("node.finished", {"n": 1})])
    assert last == 3
    assert [e.seq for e in await store.events_after("r4", 0)] == [1, 2, 3]
    assert [e.type for e in await store.events_after("r4", 2)] == ["node.finished"]
    assert await store.release("a") == 1
    run = await store.get_run("r4")
    assert run is not None and run.status == "interrupted" and run.owner is None
    assert await store.orphaned_runs("z", 30, own=False) == ["r4"]


async def test_idempotency_key_and_decisions_are_recorded_once(store: Store) -> None:
    first = await _create(store, "r5", key="k-1")
    again, created = await store.create_run(
        _row("r6", key="k-1"),
        NewEvent("run.queued", {}),
        NewAudit(actor="x", actor_kind="api_key", action="a"),
    )
    assert not created and again.id == first.id
    assert await store.get_run("r6") is None

    await store.transition(
        "r5", from_statuses=("queued",), values={"status": "waiting_approval", "owner": None}
    )
    run = await store.record_decision(
        "r5",
        "i-1",
        {"action": "approve"},
        "key:test:1",
        owner="a",
        events=[NewEvent("approval.decided", {})],
        audits=[],
    )
    assert run.status == "queued" and run.owner == "a"
    with pytest.raises(DuplicateDecisionError):
        await store.record_decision("r5", "i-1", {"action": "approve"}, "x", owner="a", events=[], audits=[])
    decision = await store.decision_for("r5", "i-1")
    assert decision is not None and decision.decision == {"action": "approve"}
    assert [r.action for r in await store.list_audit(run_id="r5")] == ["run.create"]
