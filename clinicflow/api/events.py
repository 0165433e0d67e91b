"""Run progress events and their Server-Sent Events stream.

Events are stored (numbered per run from 1) before they are announced, so a stream can start late, drop
and resume with `Last-Event-ID`, or follow a run executing on another replica (by polling the store).

Event types, in the order a run emits them:
    run.queued, run.started, node.started, model.tokens, tool.call, tool.result, node.finished, ...,
    approval.required, approval.decided, answer, run.finished (always last: status completed / failed /
    cancelled). A run resumed after a crash emits run.started again with `resumed: true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from clinicflow.api.store import Store, StoredEvent

__all__ = [
    "ANSWER",
    "APPROVAL_DECIDED",
    "APPROVAL_REQUIRED",
    "EVENT_TYPES",
    "MODEL_TOKENS",
    "NODE_FINISHED",
    "NODE_STARTED",
    "RUN_FINISHED",
    "RUN_QUEUED",
    "RUN_STARTED",
    "TOOL_CALL",
    "TOOL_RESULT",
    "EventBus",
    "RunEvent",
    "format_sse",
    "sse_stream",
]

RUN_QUEUED = "run.queued"
RUN_STARTED = "run.started"
NODE_STARTED = "node.started"
NODE_FINISHED = "node.finished"
MODEL_TOKENS = "model.tokens"
TOOL_CALL = "tool.call"
TOOL_RESULT = "tool.result"
APPROVAL_REQUIRED = "approval.required"
APPROVAL_DECIDED = "approval.decided"
ANSWER = "answer"
PROGRESS = "progress"
RUN_FINISHED = "run.finished"
EVENT_TYPES = (
    RUN_QUEUED,
    RUN_STARTED,
    NODE_STARTED,
    NODE_FINISHED,
    MODEL_TOKENS,
    TOOL_CALL,
    TOOL_RESULT,
    APPROVAL_REQUIRED,
    APPROVAL_DECIDED,
    ANSWER,
    PROGRESS,
    RUN_FINISHED,
)


class RunEvent(BaseModel):
    """One stored event of a run."""

    run_id: str
    seq: int
    type: str
    data: dict[str, Any]
    at: datetime

    @classmethod
    def from_row(cls, row: StoredEvent) -> RunEvent:
        return cls(run_id=row.run_id, seq=row.seq, type=row.type, data=row.data, at=row.at)


def format_sse(event: RunEvent) -> str:
    """One SSE message: `id` is the event's seq, `event` its type, `data` the whole event as JSON."""
    payload = json.dumps(event.model_dump(mode="json"), separators=(",", ":"), default=str)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {payload}\n\n"


class EventBus:
    """Wakes the streams of a run in this process when new events of it are stored."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def notify(self, run_id: str) -> None:
        """New events of `run_id` are in the store."""
        for waiter in self._waiters.get(run_id, ()):
            waiter.set()

    @contextlib.contextmanager
    def subscribe(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set by every `notify(run_id)` while the block runs; clear it before each check."""
        waiter = asyncio.Event()
        self._waiters.setdefault(run_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(run_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[run_id]


async def sse_stream(
    store: Store,
    bus: EventBus,
    run_id: str,
    *,
    after: int = 0,
    follow: bool = True,
    poll_s: float = 1.0,
    heartbeat_s: float = 15.0,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[str]:
    """SSE text for the run's events after `after`; with `follow`, waits for more until run.finished."""
    last = after
    quiet = 0.0
    loop = asyncio.get_running_loop()
    with bus.subscribe(run_id) as woken:
        while True:
            woken.clear()
            rows = await store.events_after(run_id, last)
            for row in rows:
                last = row.seq
                yield format_sse(RunEvent.from_row(row))
                if row.type == RUN_FINISHED:
                    return
            if rows:
                quiet = 0.0
                continue
            if not follow or (disconnected is not None and await disconnected()):
                return
            if quiet >= heartbeat_s:
                quiet = 0.0
                yield ": keep-alive\n\n"
            started = loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await woken.wait()
            quiet += loop.time() - started
