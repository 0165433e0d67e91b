"""A prepared write and its errors: the exact resource a write will create, or why it cannot be made."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["WRITE_IDENTIFIER_SYSTEM", "PreparedWrite", "WriteArgumentsError"]

WRITE_IDENTIFIER_SYSTEM = "urn:clinicflow:write"
"""System of the identifier every approved write carries; its value makes the create idempotent."""


class WriteArgumentsError(ValueError):
    """A write tool call whose arguments cannot make a valid resource; the message says what to fix."""

    def __init__(self, detail: str, errors: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)


class PreparedWrite(BaseModel):
    """The exact resource a write will create, with its idempotency identifier and where it came from."""

    tool: str
    tool_call_id: str
    resource_type: str
    resource: dict[str, Any]
    identifier_system: str = WRITE_IDENTIFIER_SYSTEM
    identifier_value: str
    patient_id: str
    run_id: str
    step: int
    content_hash: str
    notes: list[str] = Field(default_factory=list)

    @property
    def if_none_exist(self) -> str:
        """The conditional-create query: `identifier=system|value`."""
        return f"identifier={self.identifier_system}|{self.identifier_value}"
