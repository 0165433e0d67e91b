"""The reviewer's side of a write: the approval request a graph interrupts with, and the decision."""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .prepared import PreparedWrite

__all__ = [
    "APPROVAL_REQUEST_KIND",
    "ApprovalDecision",
    "ApprovalPolicy",
    "Approve",
    "Edit",
    "Reject",
    "approval_request",
    "parse_decision",
]

APPROVAL_REQUEST_KIND = "fhir_write_approval"

ApprovalPolicy = Literal["require", "auto_approve"]
"""`require`: every write waits for a person's decision; `auto_approve`: an explicit eval policy approves."""


class Approve(BaseModel):
    """Create the resource as shown."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["approve"] = "approve"


class Reject(BaseModel):
    """Do not write; the reason goes back to the agent."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["reject"] = "reject"
    reason: str = Field(min_length=1)


class Edit(BaseModel):
    """Create this replacement resource instead (edit, then approve)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["edit"] = "edit"
    resource: dict[str, Any]


ApprovalDecision = Annotated[Approve | Reject | Edit, Field(discriminator="action")]
_DECISION = TypeAdapter(ApprovalDecision)


def parse_decision(value: Any) -> Approve | Reject | Edit:
    """A reviewer's decision from `Command(resume=...)`: a model, a dict with `action`, or "approve".

    Raises `ValueError` naming the accepted shapes.
    """
    if isinstance(value, Approve | Reject | Edit):
        return value
    if isinstance(value, str) and value.strip().lower() in ("approve", "approved", "yes"):
        return Approve()
    try:
        return _DECISION.validate_python(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'decision'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(
            'a decision is {"action": "approve"}, {"action": "reject", "reason": "..."} or '
            f'{{"action": "edit", "resource": {{...}}}}; got {value!r} ({problems})'
        ) from None


def approval_request(write: PreparedWrite, *, error: str | None = None) -> dict[str, Any]:
    """The interrupt payload a reviewer sees: the exact resource, its patient, and how to answer."""
    request: dict[str, Any] = {
        "kind": APPROVAL_REQUEST_KIND,
        "question": f"Create this {write.resource_type} for Patient/{write.patient_id}?",
        "tool": write.tool,
        "tool_call_id": write.tool_call_id,
        "resource_type": write.resource_type,
        "resource": copy.deepcopy(write.resource),
        "patient_id": write.patient_id,
        "identifier": {"system": write.identifier_system, "value": write.identifier_value},
        "notes": list(write.notes),
        "answers": [
            '{"action": "approve"}',
            '{"action": "reject", "reason": "..."}',
            '{"action": "edit", "resource": {...}}',
        ],
    }
    if error:
        request["error"] = error
    return request
