"""A compact manifest of one patient's record: types, counts, date spans and the most frequent codes."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clinicflow.fhir.references import belongs_to_patient

from .render import estimate_tokens, render_resource, resource_date

__all__ = [
    "CODE_PATHS",
    "CodeCount",
    "RecordManifest",
    "TypeSummary",
    "build_manifest",
    "concept_names",
    "render_manifest",
    "resource_codings",
]

CODE_PATHS: dict[str, tuple[str, ...]] = {
    "Condition": ("code",),
    "Observation": ("code",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "MedicationAdministration": ("medicationCodeableConcept",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "MedicationDispense": ("medicationCodeableConcept",),
    "Immunization": ("vaccineCode",),
    "Procedure": ("code",),
    "Encounter": ("type",),
    "DiagnosticReport": ("code",),
    "AllergyIntolerance": ("code",),
    "CarePlan": ("category",),
    "DocumentReference": ("type",),
    "ImagingStudy": ("procedureCode",),
    "Device": ("type",),
    "Coverage": ("type",),
}
"""Where each resource type keeps the concept(s) a search by `code` matches."""

_TYPE_ORDER = (
    "Patient",
    "Condition",
    "MedicationRequest",
    "Observation",
    "Immunization",
    "Procedure",
    "AllergyIntolerance",
    "Encounter",
    "DiagnosticReport",
    "CarePlan",
    "MedicationAdministration",
    "MedicationStatement",
    "MedicationDispense",
    "ImagingStudy",
    "DocumentReference",
    "Device",
    "Coverage",
)
_CODE_CAPS = {
    "Condition": 30,
    "Observation": 30,
    "MedicationRequest": 20,
    "Immunization": 15,
    "Procedure": 20,
}
_DEFAULT_CAP = 10
_TRIM_TIER = {
    "Condition": 0,
    "MedicationRequest": 0,
    "AllergyIntolerance": 0,
    "Observation": 1,
    "Immunization": 1,
    "MedicationAdministration": 1,
    "MedicationStatement": 1,
    "MedicationDispense": 1,
}
_IGNORED_CODES = frozenset({"assess-plan"})
_MAX_DISPLAY = 60


def resource_codings(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The codings of the concept(s) a `code` search on this resource's type matches."""
    out: list[Mapping[str, Any]] = []
    for path in CODE_PATHS.get(str(resource.get("resourceType")), ("code",)):
        value = resource.get(path)
        concepts = value if isinstance(value, list) else [value]
        for concept in concepts:
            if not isinstance(concept, Mapping):
                continue
            codings = [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]
            if not codings and concept.get("text"):
                codings = [{"display": concept["text"]}]
            out.extend(c for c in codings if c.get("code") not in _IGNORED_CODES)
    return out


_SEMANTIC_TAG = re.compile(r"\s+\([a-z][a-z /-]*\)$")


def concept_names(coding: Mapping[str, Any]) -> set[str]:
    """The names a search may give one coding exactly, casefolded: its code, its display and the display
    without a SNOMED semantic tag ("Acute bronchitis (disorder)" -> "acute bronchitis")."""
    names = {str(coding.get("code") or "").casefold()}
    display = " ".join(str(coding.get("display") or "").split()).casefold()
    names |= {display, _SEMANTIC_TAG.sub("", display)}
    return names - {""}


@dataclass(frozen=True)
class CodeCount:
    """One code of one resource type, with how often and how recently it occurs."""

    system: str | None
    code: str | None
    display: str | None
    count: int
    last: str | None


@dataclass(frozen=True)
class TypeSummary:
    """Count, date span and codes (most frequent first) of one resource type in the record."""

    resource_type: str
    count: int
    first: str | None
    last: str | None
    codes: list[CodeCount] = field(default_factory=list)


@dataclass(frozen=True)
class RecordManifest:
    """What one patient's record holds, for a planner to choose its searches from."""

    patient_id: str
    patient: Mapping[str, Any] | None
    types: list[TypeSummary]
    dropped: int = 0

    def summary(self, resource_type: str) -> TypeSummary | None:
        """The summary of one type, or None when the record holds none."""
        return next((t for t in self.types if t.resource_type == resource_type), None)


def _type_rank(resource_type: str) -> tuple[int, str]:
    try:
        return _TYPE_ORDER.index(resource_type), resource_type
    except ValueError:
        return len(_TYPE_ORDER), resource_type


def build_manifest(
    resources: Iterable[Mapping[str, Any]], patient_id: str, *, types: Iterable[str] | None = None
) -> RecordManifest:
    """Summarise the resources that belong to `patient_id` (others are dropped and counted), per type."""
    wanted = set(types) if types is not None else None
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    patient: Mapping[str, Any] | None = None
    dropped = 0
    for resource in resources:
        rtype = str(resource.get("resourceType"))
        if not belongs_to_patient(resource, patient_id):
            dropped += rtype not in (
                "Practitioner",
                "PractitionerRole",
                "Organization",
                "Location",
                "Medication",
            )
            continue
        if rtype == "Patient":
            patient = resource
            continue
        if wanted is None or rtype in wanted:
            by_type.setdefault(rtype, []).append(resource)
    summaries = [_summarise(rtype, items) for rtype, items in by_type.items()]
    summaries.sort(key=lambda s: _type_rank(s.resource_type))
    return RecordManifest(patient_id=patient_id, patient=patient, types=summaries, dropped=dropped)


def _summarise(resource_type: str, items: list[Mapping[str, Any]]) -> TypeSummary:
    dates = sorted(d[:10] for d in (resource_date(r) for r in items) if d)
    counts: Counter[tuple[str | None, str | None]] = Counter()
    displays: dict[tuple[str | None, str | None], str | None] = {}
    last: dict[tuple[str | None, str | None], str] = {}
    for resource in items:
        when = (resource_date(resource) or "")[:10]
        seen: set[tuple[str | None, str | None]] = set()
        for coding in resource_codings(resource):
            key = (coding.get("system"), coding.get("code") or None)
            if key in seen:
                continue
            seen.add(key)
            counts[key] += 1
            displays.setdefault(key, coding.get("display"))
            if when > last.get(key, ""):
                last[key] = when
    codes = [
        CodeCount(system=key[0], code=key[1], display=displays.get(key), count=n, last=last.get(key) or None)
        for key, n in counts.items()
    ]
    codes.sort(key=lambda c: (-c.count, c.display or c.code or ""))
    return TypeSummary(
        resource_type=resource_type,
        count=len(items),
        first=dates[0] if dates else None,
        last=dates[-1] if dates else None,
        codes=codes,
    )


def _code_text(code: CodeCount) -> str:
    display = code.display or ""
    if len(display) > _MAX_DISPLAY:
        display = display[: _MAX_DISPLAY - 1].rstrip() + "…"
    head = f"{code.code} {display}".strip() if code.code else display
    return f"{head} ×{code.count}" if code.count > 1 else head


def _render(manifest: RecordManifest, caps: Mapping[str, int]) -> str:
    lines = [render_resource(manifest.patient) if manifest.patient else f"Patient/{manifest.patient_id}"]
    if not manifest.types:
        lines.append("The record holds no other resources.")
    for summary in manifest.types:
        span = f"{summary.first}..{summary.last}" if summary.first and summary.last else "undated"
        lines.append(f"{summary.resource_type}: {summary.count}, {span}")
        cap = caps.get(summary.resource_type, _DEFAULT_CAP)
        shown = summary.codes[:cap]
        if shown:
            more = len(summary.codes) - len(shown)
            tail = f"; +{more} more codes (search by text)" if more > 0 else ""
            lines.append("  " + "; ".join(_code_text(c) for c in shown) + tail)
    return "\n".join(lines)


def render_manifest(manifest: RecordManifest, token_budget: int = 1500) -> str:
    """The manifest as compact text (`code display ×count` per type), trimmed to `token_budget`.

    Over budget, code lists shrink by halves, least useful types first (procedures and encounters before
    observations, observations before conditions, medications and allergies); type lines always stay.
    """
    caps = {t.resource_type: _CODE_CAPS.get(t.resource_type, _DEFAULT_CAP) for t in manifest.types}
    text = _render(manifest, caps)
    for tier in (2, 1, 0):
        members = [t for t in caps if _TRIM_TIER.get(t, 2) >= tier]
        while estimate_tokens(text) > token_budget and any(caps[t] > 0 for t in members):
            for t in members:
                caps[t] //= 2
            text = _render(manifest, caps)
    return text
