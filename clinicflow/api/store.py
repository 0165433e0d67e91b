"""The service's durable state in SQLAlchemy: runs, their events, approvals, API keys and the audit trail.

SQLite by default, PostgreSQL at scale (`api.database`). Tables carry a `cf_` prefix so they can share a
database with the LangGraph checkpointer (`api.tables`); leases on runs are `api.leases`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from clinicflow.api.database import rowcount
from clinicflow.api.leases import Leases
from clinicflow.api.tables import (
    ACTIVE_STATUSES,
    CLAIMABLE_STATUSES,
    TERMINAL_STATUSES,
    ApiKeyRow,
    ApprovalRow,
    AuditRow,
    Base,
    NewAudit,
    NewEvent,
    RunEventRow,
    RunRow,
    StoredEvent,
    utcnow,
)

__all__ = [
    "ACTIVE_STATUSES",
    "CLAIMABLE_STATUSES",
    "TERMINAL_STATUSES",
    "ApiKeyRow",
    "ApprovalRow",
    "AuditRow",
    "Base",
    "DuplicateDecisionError",
    "NewAudit",
    "NewEvent",
    "RunEventRow",
    "RunRow",
    "Store",
    "StoredEvent",
    "utcnow",
]

_S = TypeVar("_S", bound=Select[Any])


class DuplicateDecisionError(Exception):
    """A decision for this pending write was already recorded."""


class Store(Leases):
    """Async access to the service's tables; one per process, shared by requests and workers."""

    # -- API keys -------------------------------------------------------------------------------

    async def add_key(self, row: ApiKeyRow) -> None:
        """Store a new API key row."""
        async with self._write() as session:
            session.add(row)

    async def get_key(self, key_id: str) -> ApiKeyRow | None:
        """The API key with this id, revoked or not."""
        async with self._read() as session:
            return await session.get(ApiKeyRow, key_id)

    async def revoke_key(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such active key."""
        changed = await self._update(
            update(ApiKeyRow)
            .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return changed == 1

    # -- runs -----------------------------------------------------------------------------------

    async def create_run(self, row: RunRow, first_event: NewEvent, audit: NewAudit) -> tuple[RunRow, bool]:
        """Insert a run with its first event and audit row; with a repeated idempotency key, the
        existing run and False."""
        existing = await self._same_key(row)
        if existing is not None:
            return existing, False
        try:
            async with self._write() as session:
                row.last_seq = 1
                session.add(row)
                session.add(_event_row(row.id, 1, first_event))
                session.add(audit.row())
        except IntegrityError:
            existing = await self._same_key(row)
            if existing is None:
                raise
            return existing, False
        return row, True

    async def _same_key(self, row: RunRow) -> RunRow | None:
        """The run its principal already started with the row's idempotency key, if any."""
        if not row.idempotency_key:
            return None
        async with self._read() as session:
            found = await session.execute(
                select(RunRow).where(
                    RunRow.principal == row.principal, RunRow.idempotency_key == row.idempotency_key
                )
            )
            return found.scalar_one_or_none()

    async def get_run(self, run_id: str) -> RunRow | None:
        """The run, or None."""
        async with self._read() as session:
            return await session.get(RunRow, run_id)

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        patient_ids: Iterable[str] | None = None,
        workflows: Iterable[str] | None = None,
        before: datetime | None = None,
        limit: int = 50,
    ) -> list[RunRow]:
        """Runs newest first, filtered; `patient_ids` / `workflows` restrict to what a token may see."""
        stmt = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(limit)
        stmt = _equal(stmt, (RunRow.status, status), (RunRow.workflow, workflow))
        if patient_ids is not None:
            stmt = stmt.where(or_(RunRow.patient_id.in_(list(patient_ids)), RunRow.patient_id.is_(None)))
        if workflows is not None:
            stmt = stmt.where(RunRow.workflow.in_(list(workflows)))
        if before is not None:
            stmt = stmt.where(RunRow.created_at < before)
        async with self._read() as session:
            return list((await session.execute(stmt)).scalars())

    async def count_runs(self, *, status: str | None = None) -> int:
        """How many runs there are (with this status)."""
        stmt = _equal(select(func.count()).select_from(RunRow), (RunRow.status, status))
        async with self._read() as session:
            return int((await session.execute(stmt)).scalar_one())

    async def transition(
        self,
        run_id: str,
        *,
        from_statuses: Iterable[str],
        values: dict[str, Any],
        events: Sequence[NewEvent] = (),
        audits: Sequence[NewAudit] = (),
        owner: str | None = None,
    ) -> RunRow | None:
        """Atomically change a run that is in one of `from_statuses` (and owned by `owner`, if given),
        appending events and audit rows in the same transaction; None when the run was not in such a state."""
        async with self._write() as session:
            stmt = update(RunRow).where(RunRow.id == run_id, RunRow.status.in_(list(from_statuses)))
            if owner is not None:
                stmt = stmt.where(RunRow.owner == owner)
            result = await session.execute(stmt.values(updated_at=utcnow(), **values))
            if rowcount(result) != 1:
                return None
            if events:
                await self._append_events(session, run_id, events)
            session.add_all([a.row() for a in audits])
            return await session.get(RunRow, run_id, populate_existing=True)

    async def request_cancel(self, run_id: str) -> bool:
        """Flag a running run for cancellation; its worker stops at the next step."""
        changed = await self._update(
            update(RunRow)
            .where(RunRow.id == run_id, RunRow.status.notin_(TERMINAL_STATUSES))
            .values(cancel_requested=True, updated_at=utcnow())
        )
        return changed == 1

    # -- events and audit -----------------------------------------------------------------------

    async def _append_events(self, session: AsyncSession, run_id: str, events: Sequence[NewEvent]) -> int:
        """Number events after the run's last one (row-locked on PostgreSQL) and add them."""
        stmt = select(RunRow.last_seq).where(RunRow.id == run_id)
        if self.postgres:
            stmt = stmt.with_for_update()
        last = int((await session.execute(stmt)).scalar_one())
        for offset, item in enumerate(events, start=1):
            session.add(_event_row(run_id, last + offset, item))
        last += len(events)
        await session.execute(update(RunRow).where(RunRow.id == run_id).values(last_seq=last))
        return last

    async def append(
        self,
        run_id: str,
        events: Sequence[NewEvent],
        audits: Sequence[NewAudit] = (),
        run_values: dict[str, Any] | None = None,
    ) -> int:
        """Store events (numbered after the last) and audit rows in one transaction; returns the last seq."""
        async with self._write() as session:
            last = await self._append_events(session, run_id, events) if events else 0
            session.add_all([a.row() for a in audits])
            if run_values:
                await session.execute(
                    update(RunRow).where(RunRow.id == run_id).values(updated_at=utcnow(), **run_values)
                )
            return last

    async def events_after(self, run_id: str, after: int, limit: int = 500) -> list[StoredEvent]:
        """Events of a run with seq > after, in order (plain rows: streams read these often)."""
        table = RunEventRow.__table__
        stmt = (
            select(table.c.run_id, table.c.seq, table.c.type, table.c.data, table.c.at)
            .where(table.c.run_id == run_id, table.c.seq > after)
            .order_by(table.c.seq)
            .limit(limit)
        )
        async with self._reader.connect() as conn:
            return [StoredEvent(*row) for row in await conn.execute(stmt)]

    async def add_audit(self, audits: Sequence[NewAudit]) -> None:
        """Store audit rows."""
        if audits:
            async with self._write() as session:
                session.add_all([a.row() for a in audits])

    async def list_audit(
        self,
        *,
        run_id: str | None = None,
        patient_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        after_id: int = 0,
        limit: int = 500,
    ) -> list[AuditRow]:
        """Audit rows in the order they were written, filtered."""
        stmt = select(AuditRow).where(AuditRow.id > after_id).order_by(AuditRow.id).limit(limit)
        stmt = _equal(
            stmt, (AuditRow.run_id, run_id), (AuditRow.patient_id, patient_id), (AuditRow.action, action)
        )
        if since:
            stmt = stmt.where(AuditRow.at >= since)
        async with self._read() as session:
            return list((await session.execute(stmt)).scalars())

    # -- approvals ------------------------------------------------------------------------------

    async def record_decision(
        self,
        run_id: str,
        interrupt_id: str,
        decision: dict[str, Any],
        decided_by: str,
        *,
        owner: str,
        events: Sequence[NewEvent],
        audits: Sequence[NewAudit],
    ) -> RunRow:
        """Store a decision and requeue the waiting run for `owner`, atomically.

        Raises `DuplicateDecisionError` when the pending write was already decided or is no longer pending.
        """
        now = utcnow()
        try:
            async with self._write() as session:
                session.add(
                    ApprovalRow(
                        run_id=run_id,
                        interrupt_id=interrupt_id,
                        decision=decision,
                        decided_by=decided_by,
                        decided_at=now,
                    )
                )
                await session.flush()
                result = await session.execute(
                    update(RunRow)
                    .where(RunRow.id == run_id, RunRow.status == "waiting_approval")
                    .values(status="queued", owner=owner, heartbeat_at=now, pending=None, updated_at=now)
                )
                if rowcount(result) != 1:
                    raise DuplicateDecisionError(f"run {run_id} is not waiting for approval")
                await self._append_events(session, run_id, events)
                session.add_all([a.row() for a in audits])
                run = await session.get(RunRow, run_id, populate_existing=True)
                assert run is not None
                return run
        except IntegrityError:
            raise DuplicateDecisionError(
                f"interrupt {interrupt_id} of run {run_id} was already decided"
            ) from None

    async def decision_for(self, run_id: str, interrupt_id: str) -> ApprovalRow | None:
        """The recorded decision on one pending write, if any."""
        async with self._read() as session:
            found = await session.execute(
                select(ApprovalRow).where(
                    ApprovalRow.run_id == run_id, ApprovalRow.interrupt_id == interrupt_id
                )
            )
            return found.scalar_one_or_none()


def _event_row(run_id: str, seq: int, item: NewEvent) -> RunEventRow:
    return RunEventRow(run_id=run_id, seq=seq, type=item.type, data=item.data, at=item.at)


def _equal(stmt: _S, *filters: tuple[InstrumentedAttribute[Any], str | None]) -> _S:
    """`stmt` restricted to rows whose column equals each value given (None or "" leaves it out)."""
    for column, value in filters:
        if value:
            stmt = stmt.where(column == value)
    return stmt
