"""The service's durable state in SQLAlchemy: runs, their events, approvals, API keys and the audit trail.

SQLite by default (WAL, writes serialized in-process), PostgreSQL at scale. Tables carry a `cf_` prefix so
they can share a database with the LangGraph checkpointer. A run is executed by the server that holds its
lease (`owner` + `heartbeat_at`); `claim` takes a lease atomically, so two servers never run one run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from clinicflow.api.config import async_database_url, is_postgres

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

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
ACTIVE_STATUSES = frozenset({"queued", "running"})
CLAIMABLE_STATUSES = frozenset({"queued", "running", "interrupted"})
_ID = BigInteger().with_variant(Integer, "sqlite")
_SCHEMA_LOCK = 7_415_020_771


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""


class ApiKeyRow(Base):
    """A static API key: only a salted SHA-256 digest of its secret is kept."""

    __tablename__ = "cf_api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    salt: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RunRow(Base):
    """One workflow run: input, who started it, where it stands, its result and its lease."""

    __tablename__ = "cf_runs"
    __table_args__ = (UniqueConstraint("principal", "idempotency_key", name="uq_cf_runs_idempotency"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    principal: Mapped[str] = mapped_column(String(200))
    principal_kind: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(200), index=True, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class RunEventRow(Base):
    """One progress event of a run, numbered from 1 without gaps; the SSE stream replays these."""

    __tablename__ = "cf_run_events"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_cf_run_events_seq"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApprovalRow(Base):
    """A reviewer's decision on one pending write (one interrupt), recorded once."""

    __tablename__ = "cf_approvals"
    __table_args__ = (UniqueConstraint("run_id", "interrupt_id", name="uq_cf_approvals_interrupt"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    interrupt_id: Mapped[str] = mapped_column(String(64))
    decision: Mapped[dict[str, Any]] = mapped_column(JSON)
    decided_by: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditRow(Base):
    """One audited action: who, on which patient and run, which resources, when, and the outcome."""

    __tablename__ = "cf_audit"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    actor_kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    workflow: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resources: Mapped[list[str]] = mapped_column(JSON)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


@dataclass
class NewEvent:
    """An event waiting to be numbered and stored."""

    type: str
    data: dict[str, Any]
    at: datetime = field(default_factory=utcnow)


@dataclass
class NewAudit:
    """An audit row waiting to be stored."""

    actor: str
    actor_kind: str
    action: str
    outcome: str = "success"
    run_id: str | None = None
    patient_id: str | None = None
    workflow: str | None = None
    resources: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)

    def row(self) -> AuditRow:
        return AuditRow(
            at=self.at,
            actor=self.actor,
            actor_kind=self.actor_kind,
            action=self.action,
            outcome=self.outcome,
            run_id=self.run_id,
            patient_id=self.patient_id,
            workflow=self.workflow,
            resources=list(self.resources),
            detail=dict(self.detail),
        )


class StoredEvent(NamedTuple):
    """One stored event, as read back."""

    run_id: str
    seq: int
    type: str
    data: dict[str, Any]
    at: datetime


class DuplicateDecisionError(Exception):
    """A decision for this pending write was already recorded."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Store:
    """Async access to the service's tables; one per process, shared by requests and workers."""

    def __init__(self, url: str, *, pool_size: int = 20, echo: bool = False) -> None:
        self.url = url
        self.postgres = is_postgres(url)
        if not self.postgres and url.startswith("sqlite") and "///" in url and ":memory:" not in url:
            from pathlib import Path

            Path(url.split("///", 1)[1].split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"echo": echo}
        if self.postgres:
            kwargs |= {"pool_size": pool_size, "max_overflow": pool_size, "pool_recycle": 1800}
        self.engine: AsyncEngine = create_async_engine(async_database_url(url), **kwargs)
        if not self.postgres:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._read_sessions = async_sessionmaker(self._reader, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if not self.postgres else None

    async def init(self) -> None:
        """Create missing tables (under an advisory lock on PostgreSQL, so replicas may start together)."""
        async with self.engine.begin() as conn:
            if self.postgres:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
            await conn.run_sync(Base.metadata.create_all)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits on exit; writes are serialized on SQLite."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self._sessions() as session, session.begin():
            yield session

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncSession]:
        """A session for single-statement reads, in autocommit (no transaction to roll back)."""
        async with self._read_sessions() as session:
            yield session

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
        async with self._write() as session:
            result = await session.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            return _rowcount(result) == 1

    # -- runs -----------------------------------------------------------------------------------

    async def create_run(self, row: RunRow, first_event: NewEvent, audit: NewAudit) -> tuple[RunRow, bool]:
        """Insert a run with its first event and audit row; with a repeated idempotency key, the
        existing run and False."""
        if row.idempotency_key:
            existing = await self._by_idempotency(row.principal, row.idempotency_key)
            if existing is not None:
                return existing, False
        try:
            async with self._write() as session:
                row.last_seq = 1
                session.add(row)
                session.add(_event_row(row.id, 1, first_event))
                session.add(audit.row())
        except IntegrityError:
            if row.idempotency_key:
                existing = await self._by_idempotency(row.principal, row.idempotency_key)
                if existing is not None:
                    return existing, False
            raise
        return row, True

    async def _by_idempotency(self, principal: str, key: str) -> RunRow | None:
        async with self._read() as session:
            found = await session.execute(
                select(RunRow).where(RunRow.principal == principal, RunRow.idempotency_key == key)
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
        if status:
            stmt = stmt.where(RunRow.status == status)
        if workflow:
            stmt = stmt.where(RunRow.workflow == workflow)
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
        stmt = select(func.count()).select_from(RunRow)
        if status:
            stmt = stmt.where(RunRow.status == status)
        async with self._read() as session:
            return int((await session.execute(stmt)).scalar_one())

    async def claim(self, run_id: str, owner: str, lease_s: float) -> RunRow | None:
        """Take the run's lease and mark it running, unless another live server holds it or it is done."""
        now = utcnow()
        async with self._write() as session:
            result = await session.execute(
                update(RunRow)
                .where(
                    RunRow.id == run_id,
                    RunRow.status.in_(CLAIMABLE_STATUSES),
                    RunRow.cancel_requested.is_(False),
                    or_(
                        RunRow.owner.is_(None),
                        RunRow.owner == owner,
                        RunRow.heartbeat_at < now - timedelta(seconds=lease_s),
                    ),
                )
                .values(
                    owner=owner,
                    heartbeat_at=now,
                    status="running",
                    attempts=RunRow.attempts + 1,
                    started_at=func.coalesce(RunRow.started_at, now),
                    updated_at=now,
                )
            )
            if _rowcount(result) != 1:
                return None
            return await session.get(RunRow, run_id, populate_existing=True)

    async def heartbeat(self, owner: str) -> int:
        """Renew the lease of every active run this server owns; returns how many."""
        async with self._write() as session:
            result = await session.execute(
                update(RunRow)
                .where(RunRow.owner == owner, RunRow.status.in_(ACTIVE_STATUSES))
                .values(heartbeat_at=utcnow())
            )
            return _rowcount(result)

    async def orphaned_runs(self, owner: str, lease_s: float, *, own: bool) -> list[str]:
        """Active or interrupted runs whose lease lapsed (and, with `own`, those this worker id held)."""
        cutoff = utcnow() - timedelta(seconds=lease_s)
        conditions = [RunRow.heartbeat_at < cutoff, RunRow.owner.is_(None)]
        if own:
            conditions.append(RunRow.owner == owner)
        stmt = (
            select(RunRow.id)
            .where(RunRow.status.in_(CLAIMABLE_STATUSES), or_(*conditions))
            .order_by(RunRow.created_at)
        )
        async with self._read() as session:
            return list((await session.execute(stmt)).scalars())

    async def release(self, owner: str) -> int:
        """On shutdown: mark this server's active runs interrupted and free their lease."""
        async with self._write() as session:
            result = await session.execute(
                update(RunRow)
                .where(RunRow.owner == owner, RunRow.status.in_(ACTIVE_STATUSES))
                .values(status="interrupted", owner=None, updated_at=utcnow())
            )
            return _rowcount(result)

    async def control(self, run_id: str) -> tuple[bool, str | None]:
        """(cancel requested, current owner) of a run, read fresh."""
        async with self._read() as session:
            found = await session.execute(
                select(RunRow.cancel_requested, RunRow.owner).where(RunRow.id == run_id)
            )
            row = found.one_or_none()
            return (bool(row[0]), row[1]) if row else (True, None)

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
            if _rowcount(result) != 1:
                return None
            if events:
                await self._append_events(session, run_id, events)
            session.add_all([a.row() for a in audits])
            return await session.get(RunRow, run_id, populate_existing=True)

    async def request_cancel(self, run_id: str) -> bool:
        """Flag a running run for cancellation; its worker stops at the next step."""
        async with self._write() as session:
            result = await session.execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status.notin_(TERMINAL_STATUSES))
                .values(cancel_requested=True, updated_at=utcnow())
            )
            return _rowcount(result) == 1

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
        if run_id:
            stmt = stmt.where(AuditRow.run_id == run_id)
        if patient_id:
            stmt = stmt.where(AuditRow.patient_id == patient_id)
        if action:
            stmt = stmt.where(AuditRow.action == action)
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
                if _rowcount(result) != 1:
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


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
