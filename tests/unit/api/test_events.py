"""SSE framing and the event stream: replay after an id, follow until run.finished, wake on notify."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clinicflow.api.events import EventBus, RunEvent, format_sse, sse_stream
from clinicflow.api.store import NewAudit, NewEvent, RunRow, Store, utcnow


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    found = Store(f"sqlite:///{tmp_path}/events.sqlite")
    await found.init()
    now = utcnow()
    row = RunRow(
        id="r1",
        workflow="ehr_qa",
        status="running",
        input={},
        patient_id=None,
        principal="p",
        principal_kind="api_key",
        scopes=[],
        created_at=now,
        updated_at=now,
        attempts=1,
        cancel_requested=False,
    )
    await found.create_run(
        row, NewEvent("run.queued", {}), NewAudit(actor="p", actor_kind="api_key", action="a")
    )
    yield found
    await found.close()


def test_format_sse_carries_seq_type_and_the_event_as_json() -> None:
    event = RunEvent(run_id="r1", seq=4, type="tool.call", data={"tool": "search_record"}, at=utcnow())
    text = format_sse(event)
    lines = text.splitlines()
    assert lines[:2] == ["id: 4", "event: tool.call"] and text.endswith("\n\n")
    assert json.loads(lines[2].removeprefix("data: "))["data"] == {"tool": "search_record"}


async def test_stream_replays_then_follows_until_the_run_finishes(store: Store) -> None:
    bus = EventBus()
    await store.append("r1", [NewEvent("run.started", {})])
    seen: list[str] = []

    async def read() -> None:
        async for chunk in sse_stream(store, bus, "r1", after=1, poll_s=30):
            seen.append(chunk.splitlines()[1])

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.2)
    assert seen == ["event: run.started"]
    await store.append(
        "r1", [NewEvent("node.started", {}), NewEvent("run.finished", {"status": "completed"})]
    )
    bus.notify("r1")
    await asyncio.wait_for(reader, 5)
    assert seen == ["event: run.started", "event: node.started", "event: run.finished"]


async def test_without_follow_the_stream_ends_after_stored_events(store: Store) -> None:
    chunks = [c async for c in sse_stream(store, EventBus(), "r1", follow=False)]
    assert len(chunks) == 1 and "event: run.queued" in chunks[0]
