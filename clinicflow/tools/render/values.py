"""FHIR data types as short text: dates, codes and concepts, quantities, values and names."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "Resource",
    "citation",
    "codes_of",
    "codings_text",
    "components_text",
    "concept_text",
    "concepts_text",
    "day_of",
    "human_name",
    "joined",
    "number_text",
    "path_value",
    "quantity_text",
    "reference_range_text",
    "resource_date",
    "shortened",
    "status_text",
    "value_text",
]

Resource = Mapping[str, Any]

_BP_SYSTOLIC = "8480-6"
_BP_DIASTOLIC = "8462-4"
_UNITS = {"mm[Hg]": "mmHg", "[lb_av]": "lb", "[in_i]": "in", "[degF]": "°F", "Cel": "°C"}
_MAX_TEXT = 80
_MAX_ITEMS = 3

_DATE_PATHS: dict[str, tuple[str, ...]] = {
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate", "abatementDateTime"),
    "MedicationRequest": ("authoredOn",),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod.start"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
    "MedicationDispense": ("whenHandedOver", "whenPrepared"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "Encounter": ("period.start",),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "AllergyIntolerance": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "CarePlan": ("period.start", "created"),
    "CareTeam": ("period.start",),
    "DocumentReference": ("date", "context.period.start"),
    "ImagingStudy": ("started",),
    "Device": ("manufactureDate",),
    "SupplyDelivery": ("occurrenceDateTime", "occurrencePeriod.start"),
    "ServiceRequest": ("authoredOn", "occurrenceDateTime"),
    "Claim": ("created",),
    "ExplanationOfBenefit": ("created",),
    "Coverage": ("period.start",),
    "Goal": ("startDate",),
}
_GENERIC_DATE_PATHS = (
    "effectiveDateTime",
    "occurrenceDateTime",
    "authoredOn",
    "date",
    "period.start",
    "created",
)


def path_value(resource: Any, path: str) -> Any:
    """The value at a dotted path ("period.start"), or None where the path breaks off."""
    node = resource
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def day_of(value: Any) -> str | None:
    """The YYYY-MM-DD part of a date or date-time string."""
    return value[:10] if isinstance(value, str) and value else None


def shortened(text: str, limit: int = _MAX_TEXT) -> str:
    """The text on one line, cut to `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def resource_date(resource: Resource) -> str | None:
    """The clinically relevant date-time of a resource (ISO string as stored), used to order lines."""
    for path in _DATE_PATHS.get(str(resource.get("resourceType")), _GENERIC_DATE_PATHS):
        value = path_value(resource, path)
        if isinstance(value, str) and value:
            return value
    return None


def citation(resource: Resource) -> str:
    """`[Type/id]`, the citation every rendered line ends with."""
    return f"[{resource.get('resourceType', 'Resource')}/{resource.get('id', '?')}]"


def concept_text(concept: Any) -> str | None:
    """Human text of a CodeableConcept (or Coding): text, else the first display, else system|code."""
    if not isinstance(concept, Mapping):
        return None
    if concept.get("text"):
        return str(concept["text"])
    if concept.get("display"):
        return str(concept["display"])
    codings = [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]
    for coding in codings:
        if coding.get("display"):
            return str(coding["display"])
    for coding in codings:
        if coding.get("code"):
            return str(coding["code"])
    if concept.get("code"):
        return str(concept["code"])
    return None


def concepts_text(values: Any, limit: int = _MAX_ITEMS) -> str | None:
    """The texts of several CodeableConcepts, the first `limit` of them and a count of the rest."""
    texts = [t for t in (concept_text(v) for v in values or []) if t]
    if not texts:
        return None
    shown = ", ".join(dict.fromkeys(texts[:limit]))
    return shown + (f" +{len(texts) - limit}" if len(texts) > limit else "")


def codings_text(concept: Any, limit: int = _MAX_ITEMS) -> str | None:
    """Several coding displays of a concept without text (the first `limit`, a count of the rest), else
    `concept_text`."""
    if not isinstance(concept, Mapping):
        return None
    displays = [
        str(c["display"]) for c in concept.get("coding") or [] if isinstance(c, Mapping) and c.get("display")
    ]
    if concept.get("text") or len(displays) < 2:
        return concept_text(concept)
    shown = ", ".join(dict.fromkeys(displays[:limit]))
    return shown + (f" +{len(displays) - limit}" if len(displays) > limit else "")


def codes_of(concept: Any) -> set[str]:
    """The codes of a CodeableConcept's codings."""
    if not isinstance(concept, Mapping):
        return set()
    return {str(c.get("code")) for c in concept.get("coding") or [] if isinstance(c, Mapping)}


def number_text(value: Any) -> str:
    """A number as a reader writes it: no trailing zeros, a few significant digits for small ones."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _unit(quantity: Mapping[str, Any]) -> str:
    unit = str(quantity.get("unit") or quantity.get("code") or "")
    unit = _UNITS.get(unit, unit)
    return "" if unit.startswith("{") and unit.endswith("}") else unit


def quantity_text(quantity: Any) -> str | None:
    """A Quantity as text: comparator, number, and its unit as a reader writes it."""
    if not isinstance(quantity, Mapping) or quantity.get("value") is None:
        return None
    comparator = str(quantity.get("comparator") or "")
    unit = _unit(quantity)
    text = f"{comparator}{number_text(quantity['value'])}"
    return f"{text} {unit}" if unit else text


def value_text(element: Mapping[str, Any]) -> str | None:
    """An element's value[x] as text (quantity, concept, string, boolean, ...), or None."""
    if "valueQuantity" in element:
        return quantity_text(element["valueQuantity"])
    if "valueCodeableConcept" in element:
        return concept_text(element["valueCodeableConcept"])
    if "valueString" in element:
        return shortened(str(element["valueString"]))
    if "valueBoolean" in element:
        return "yes" if element["valueBoolean"] else "no"
    if "valueInteger" in element:
        return str(element["valueInteger"])
    if "valueDateTime" in element:
        return day_of(element["valueDateTime"])
    if "valueTime" in element:
        return str(element["valueTime"])
    if "valuePeriod" in element:
        period = element["valuePeriod"] or {}
        return f"{day_of(period.get('start')) or '?'}–{day_of(period.get('end')) or '?'}"
    if "valueRange" in element:
        rng = element["valueRange"] or {}
        return f"{quantity_text(rng.get('low')) or '?'}–{quantity_text(rng.get('high')) or '?'}"
    if "valueRatio" in element:
        ratio = element["valueRatio"] or {}
        top, bottom = quantity_text(ratio.get("numerator")), quantity_text(ratio.get("denominator"))
        return f"{top or '?'}/{bottom or '?'}"
    if "valueSampledData" in element:
        return "sampled data"
    return None


def components_text(components: Sequence[Any]) -> str | None:
    """Observation components: a blood pressure as systolic/diastolic, else `name: value` pairs."""
    comps = [c for c in components if isinstance(c, Mapping)]
    by_code = {code: c for c in comps for code in codes_of(c.get("code"))}
    if _BP_SYSTOLIC in by_code and _BP_DIASTOLIC in by_code:
        sys_q = by_code[_BP_SYSTOLIC].get("valueQuantity") or {}
        dia_q = by_code[_BP_DIASTOLIC].get("valueQuantity") or {}
        if sys_q.get("value") is not None and dia_q.get("value") is not None:
            unit = _unit(sys_q)
            text = f"{number_text(sys_q['value'])}/{number_text(dia_q['value'])}"
            return f"{text} {unit}" if unit else text
    parts = [f"{concept_text(c.get('code')) or 'component'}: {value_text(c) or 'no value'}" for c in comps]
    return "; ".join(parts) or None


def reference_range_text(ranges: Any) -> str | None:
    """The first usable reference range: `ref low–high unit`, or its short text."""
    for rng in ranges or []:
        if not isinstance(rng, Mapping):
            continue
        low, high = rng.get("low") or {}, rng.get("high") or {}
        if low.get("value") is not None and high.get("value") is not None:
            unit = _unit(high)
            text = f"ref {number_text(low['value'])}–{number_text(high['value'])}"
            return f"{text} {unit}" if unit else text
        if rng.get("text") and len(str(rng["text"])) <= 20:
            return f"ref {rng['text']}"
    return None


def status_text(concept: Any) -> str | None:
    """A status given as a code or as a CodeableConcept, as text."""
    if isinstance(concept, str):
        return concept
    return concept_text(concept)


def joined(parts: Iterable[str | None]) -> str:
    """The parts that are there, joined by "; "."""
    return "; ".join(p for p in parts if p)


def human_name(resource: Resource) -> str | None:
    """`Dr. Given Family` of a Practitioner/Patient/RelatedPerson, or the name of an Organization/Location."""
    name = resource.get("name")
    if isinstance(name, str):
        return name
    names = [n for n in name or [] if isinstance(n, Mapping)]
    if not names:
        return None
    chosen = next((n for n in names if n.get("use") == "official"), names[0])
    if chosen.get("text"):
        return str(chosen["text"])
    parts = [*(chosen.get("prefix") or []), *(chosen.get("given") or []), chosen.get("family") or ""]
    return " ".join(str(p) for p in parts if p) or None
