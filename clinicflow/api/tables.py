"""The service's tables (SQLAlchemy models, `cf_` prefixed) and the rows waiting to be stored; `api.store`
exports them all."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
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
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
ACTIVE_STATUSES = frozenset({"queued", "running"})
CLAIMABLE_STATUSES = frozenset({"queued", "running", "interrupted"})
_ID = BigInteger().with_variant(Integer, "sqlite")


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
