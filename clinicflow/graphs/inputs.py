"""Field types the workflows' Input models share: a FHIR patient id and bounded JSON values."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, Field

__all__ = ["PATIENT_ID_PATTERN", "PatientId", "bounded_json"]

# FHIR_ID without its look-ahead (JSON Schema and pydantic's regex engine have none): at least one
# character that is not a dot, so `.` and `..` never reach a FHIR URL; the length comes from max_length.
PATIENT_ID_PATTERN = r"^[A-Za-z0-9\-.]*[A-Za-z0-9\-][A-Za-z0-9\-.]*$"
PatientId = Annotated[str, Field(min_length=1, max_length=64, pattern=PATIENT_ID_PATTERN)]
"""A FHIR patient id: 1-64 letters, digits, `-` and `.`, not dots alone."""


def bounded_json(max_chars: int) -> AfterValidator:
    """A validator bounding a JSON value by its size written as JSON."""

    def check(value: Any) -> Any:
        size = len(json.dumps(value, ensure_ascii=False))
        if size > max_chars:
            raise ValueError(f"is {size} characters as JSON; at most {max_chars} are accepted")
        return value

    return AfterValidator(check)
