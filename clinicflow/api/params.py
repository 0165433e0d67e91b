"""What the endpoints share in their signatures: parameter types and the error responses they document."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BeforeValidator

from clinicflow.api.schemas import RUN_ID_PATTERN, ErrorOut

__all__ = [
    "BODY_ERRORS",
    "ERRORS",
    "MAX_ID",
    "RUN_ERRORS",
    "WORKFLOW_NAME",
    "IsoDatetime",
    "RunId",
]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid bearer token."},
    403: {"model": ErrorOut, "description": "The token's scopes do not cover this."},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body is not JSON (or not UTF-8)."},
    413: {"model": ErrorOut, "description": "The body is larger than the server accepts."},
    422: {"model": ErrorOut, "description": "The body does not follow the schema."},
}
RUN_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": ErrorOut, "description": "No such run."},
}
MAX_ID = 2**53
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?$")


def _iso_only(value: Any) -> Any:
    """Only an ISO 8601 date-time: pydantic alone would also read `0.5` as seconds since 1970."""
    if isinstance(value, str) and not _ISO_DATETIME.match(value):
        raise ValueError("expected an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_aware)]
WORKFLOW_NAME = r"^[a-z][a-z0-9_]{0,63}$"
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="Run id (32 hex digits).")]
