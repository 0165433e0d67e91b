"""A search of one patient's record as the model asks for it: the searchable types, their search
parameters, and `RecordQuery`, the validated arguments."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal, get_args

from ..errors import BadToolArguments

__all__ = [
    "DEFAULT_LIMIT",
    "SEARCHABLE_TYPES",
    "SEARCH_PARAMS",
    "RecordQuery",
    "ResourceType",
    "SearchParams",
]

ResourceType = Literal[
    "Patient",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationAdministration",
    "MedicationStatement",
    "Immunization",
    "Procedure",
    "Encounter",
    "DiagnosticReport",
    "AllergyIntolerance",
    "CarePlan",
    "DocumentReference",
    "ImagingStudy",
    "Device",
    "Coverage",
]
SEARCHABLE_TYPES: tuple[str, ...] = get_args(ResourceType)


@dataclass(frozen=True)
class SearchParams:
    """The FHIR search parameters of one type: its patient, its code and its date (None: it has none)."""

    patient: str = "patient"
    code: str | None = "code"
    date: str | None = "date"


SEARCH_PARAMS: dict[str, SearchParams] = {
    "Condition": SearchParams(date="onset-date"),
    "Observation": SearchParams(),
    "MedicationRequest": SearchParams(date="authoredon"),
    "MedicationAdministration": SearchParams(date="effective-time"),
    "MedicationStatement": SearchParams(date="effective"),
    "Immunization": SearchParams(code="vaccine-code"),
    "Procedure": SearchParams(),
    "Encounter": SearchParams(code="type"),
    "DiagnosticReport": SearchParams(),
    "AllergyIntolerance": SearchParams(),
    "CarePlan": SearchParams(code="category"),
    "DocumentReference": SearchParams(code="type"),
    "ImagingStudy": SearchParams(code=None, date="started"),
    "Device": SearchParams(code="type", date=None),
    "Coverage": SearchParams(code="type", date=None),
}
_SYSTEMS = {
    "loinc": "http://loinc.org",
    "snomed": "http://snomed.info/sct",
    "sct": "http://snomed.info/sct",
    "snomedct": "http://snomed.info/sct",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "cvx": "http://hl7.org/fhir/sid/cvx",
    "icd10": "http://hl7.org/fhir/sid/icd-10-cm",
}
_BARE_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]*$")
_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_MAX_LIMIT = 100
DEFAULT_LIMIT = 25


@dataclass(frozen=True)
class RecordQuery:
    """A validated search of one patient's record; build it with `RecordQuery.parse`."""

    resource_type: str
    system: str | None = None
    code: str | None = None
    code_text: str | None = None
    text: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(
        cls,
        resource_type: str,
        code: str | None = None,
        text: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        limit: int | None = None,
    ) -> RecordQuery:
        """Validate model-supplied arguments; raises `BadToolArguments` naming what is allowed."""
        if resource_type not in SEARCHABLE_TYPES:
            raise BadToolArguments(
                f"unknown resource_type {resource_type!r}; use one of {', '.join(SEARCHABLE_TYPES)}"
            )
        system, token, code_text = _parse_code(code)
        start = _parse_date("date_from", date_from, end=False)
        stop = _parse_date("date_to", date_to, end=True)
        if start and stop and start > stop:
            raise BadToolArguments(f"date_from {date_from!r} is after date_to {date_to!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise BadToolArguments(f"limit must be a whole number from 1 to {_MAX_LIMIT}, got {limit!r}")
        text = text.strip() if isinstance(text, str) and text.strip() else None
        return cls(
            resource_type=resource_type,
            system=system,
            code=token,
            code_text=code_text,
            text=text,
            date_from=start,
            date_to=stop,
            limit=min(limit or DEFAULT_LIMIT, _MAX_LIMIT),
        )

    def describe(self) -> str:
        """The criteria in words, for headers and not-found messages."""
        parts: list[str] = []
        if self.code:
            parts.append(f"code {self.system + '|' if self.system else ''}{self.code}")
        if self.code_text:
            parts.append(f"code matching {self.code_text!r}")
        if self.text:
            parts.append(f"text {self.text!r}")
        if self.date_from or self.date_to:
            parts.append(f"dated {self.date_from or '…'} to {self.date_to or '…'}")
        return ", ".join(parts)


def _parse_code(code: str | None) -> tuple[str | None, str | None, str | None]:
    if code is None or not code.strip():
        return None, None, None
    code = code.strip()
    if "|" in code:
        system, _, value = code.partition("|")
        system, value = system.strip(), value.strip()
        if not value:
            raise BadToolArguments(f"code {code!r} has no code after '|'; give system|code or a bare code")
        return _SYSTEMS.get(system.lower().replace(" ", ""), system) or None, value, None
    if _BARE_CODE.match(code) and any(ch.isdigit() for ch in code):
        return None, code, None
    return None, None, code


def _parse_date(name: str, value: str | None, *, end: bool) -> str | None:
    if value is None or not str(value).strip():
        return None
    match = _DATE.match(str(value).strip())
    try:
        if not match:
            raise ValueError
        year, month, day = int(match.group(1)), match.group(2), match.group(3)
        if month is None:
            return dt.date(year, 12 if end else 1, 31 if end else 1).isoformat()
        if day is None:
            last = calendar.monthrange(year, int(month))[1]
            return dt.date(year, int(month), last if end else 1).isoformat()
        return dt.date(year, int(month), int(day)).isoformat()
    except ValueError:
        raise BadToolArguments(f"{name} {value!r} is not a date; use YYYY-MM-DD (or YYYY-MM, YYYY)") from None
