"""Request and response bodies of the HTTP API (they make up its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clinicflow.api.store import RunRow

__all__ = [
    "RUN_ID_PATTERN",
    "ApprovalIn",
    "AuditList",
    "ErrorOut",
    "HealthOut",
    "PendingApproval",
    "RunCreate",
    "RunList",
    "RunOut",
    "RunStatus",
    "WorkflowOut",
]

RUN_ID_PATTERN = r"^[0-9a-f]{32}$"
RunStatus = Literal[
    "queued", "running", "waiting_approval", "interrupted", "completed", "failed", "cancelled"
]


class ErrorOut(BaseModel):
    """An error: what went wrong, in words."""

    detail: str | list[dict[str, Any]]


class RunCreate(BaseModel):
    """Start a run of a registered workflow; `input` follows that workflow's input schema."""

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]{0,63}$", examples=["ehr_qa"])
    input: dict[str, Any] = Field(
        examples=[{"question": "What was the most recent HbA1c?", "patient_id": "abc-123"}]
    )


class PendingApproval(BaseModel):
    """A write waiting for a person: the interrupt to answer and what it would do."""

    interrupt_id: str
    request: Any
    count: int = 1


class RunOut(BaseModel):
    """A run: where it stands, its result (answer, citations, evidence, provenance) and any pending write."""

    id: str
    workflow: str
    status: RunStatus
    patient_id: str | None
    input: dict[str, Any]
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    result: dict[str, Any] | None
    error: str | None
    pending_approval: PendingApproval | None
    cancel_requested: bool
    last_event: int

    @classmethod
    def from_row(cls, row: RunRow) -> RunOut:
        return cls(
            id=row.id,
            workflow=row.workflow,
            status=row.status,  # type: ignore[arg-type]
            patient_id=row.patient_id,
            input=row.input,
            created_by=row.principal,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            attempts=row.attempts,
            result=row.result,
            error=row.error,
            pending_approval=PendingApproval.model_validate(row.pending) if row.pending else None,
            cancel_requested=row.cancel_requested,
            last_event=row.last_seq,
        )


class RunList(BaseModel):
    """Runs, newest first; pass `next_before` as `before` for the next page."""

    runs: list[RunOut]
    next_before: datetime | None


class ApprovalIn(BaseModel):
    """A decision on the pending write: approve it, reject it with a reason, or edit the resource."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["approve", "reject", "edit"]
    reason: str | None = Field(None, max_length=4000, description="Why (required to reject).")
    resource: dict[str, Any] | None = Field(None, description="The replacement resource (required to edit).")
    interrupt_id: str | None = Field(
        None, max_length=64, description="The pending write this answers (default: the one pending now)."
    )

    @model_validator(mode="after")
    def _complete(self) -> ApprovalIn:
        if self.action == "reject" and not (self.reason or "").strip():
            raise ValueError("a rejection needs a reason")
        if self.action == "edit" and not self.resource:
            raise ValueError("an edit needs the replacement resource")
        return self

    def decision(self) -> dict[str, Any]:
        """The resume value handed to the graph: {"action": ...} plus reason or resource."""
        out: dict[str, Any] = {"action": self.action}
        if self.action == "reject":
            out["reason"] = self.reason
        if self.action == "edit":
            out["resource"] = self.resource
        return out


class WorkflowOut(BaseModel):
    """A registered workflow and the JSON schema of its input."""

    name: str
    description: str
    writes: bool
    input_schema: dict[str, Any]


class AuditList(BaseModel):
    """Audit rows (or FHIR AuditEvent resources) in order; pass `next_after` as `after` for more."""

    entries: list[dict[str, Any]]
    next_after: int | None


class HealthOut(BaseModel):
    """Liveness and readiness of the service's dependencies."""

    status: Literal["ok", "degraded"]
    database: str
    workers: dict[str, Any]
    workflows: list[str]
