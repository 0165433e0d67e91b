"""Request and response bodies of the HTTP API (they make up its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
from pydantic.json_schema import JsonDict

from clinicflow.api.store import RunRow
from clinicflow.api.workflows import bounded_json
from clinicflow.graphs.text import unstorable_strings

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
RESOURCE_MAX_CHARS = 64_000
RunStatus = Literal[
    "queued", "running", "waiting_approval", "interrupted", "completed", "failed", "cancelled"
]


class ErrorOut(BaseModel):
    """An error: what went wrong, in words."""

    detail: str | list[dict[str, Any]]


def check_storable(value: Any, what: str) -> None:
    """ValueError naming the first string in `value` that the store cannot keep (NUL, lone surrogate)."""
    for path, reason in unstorable_strings(value):
        where = ".".join([what, *map(str, path)])
        raise ValueError(f"{where} {reason}; remove it")


class RunCreate(BaseModel):
    """Start a run of a registered workflow; `input` follows that workflow's input schema."""

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]{0,63}$", examples=["ehr_qa"])
    input: dict[str, Any] = Field(
        description="The workflow's input (see `GET /v1/workflows`). No string may hold a NUL character."
    )

    @field_validator("input")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_storable(value, "input")
        return value


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


# The rule `_complete` enforces, stated in the JSON schema so that clients (and generated tests) see it.
_APPROVAL_RULES: JsonDict = {
    "allOf": [
        {
            "if": {"properties": {"action": {"const": "reject"}}, "required": ["action"]},
            "then": {"required": ["reason"], "properties": {"reason": {"type": "string", "pattern": "\\S"}}},
        },
        {
            "if": {"properties": {"action": {"const": "edit"}}, "required": ["action"]},
            "then": {
                "required": ["resource"],
                "properties": {"resource": {"type": "object", "minProperties": 1}},
            },
        },
    ]
}


class ApprovalIn(BaseModel):
    """A decision on the pending write: approve it, reject it with a reason, or edit the resource."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_APPROVAL_RULES)

    action: Literal["approve", "reject", "edit"]
    reason: str | None = Field(None, max_length=4000, description="Why (required to reject).")
    resource: Annotated[dict[str, JsonValue], bounded_json(RESOURCE_MAX_CHARS)] | None = Field(
        None,
        description=f"The replacement resource (required to edit); at most {RESOURCE_MAX_CHARS} characters "
        "as JSON.",
    )
    interrupt_id: str | None = Field(
        None, max_length=64, description="The pending write this answers (default: the one pending now)."
    )

    @model_validator(mode="after")
    def _complete(self) -> ApprovalIn:
        check_storable({"reason": self.reason, "resource": self.resource}, "body")
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
