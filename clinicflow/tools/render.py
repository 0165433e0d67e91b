"""Compact, cited one-line renderings of FHIR resources for model prompts.

Each line starts with the resource's clinical date and ends with its citation, e.g.
`2023-04-02 Hemoglobin A1c 7.9 % [Observation/abc]`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clinicflow.fhir.references import OUTSIDE_COMPARTMENTS, reference_of

__all__ = [
    "NOT_SHOWN",
    "References",
    "citation",
    "concept_text",
    "estimate_tokens",
    "human_name",
    "quantity_text",
    "render_lines",
    "render_resource",
    "resource_date",
    "value_text",
]

Resource = Mapping[str, Any]

NOT_SHOWN = "a record outside this patient's (not shown)"
"""What a line says in place of a reference it may not show: another patient's, or not verified."""

_BP_SYSTOLIC = "8480-6"
_BP_DIASTOLIC = "8462-4"
_UNITS = {"mm[Hg]": "mmHg", "[lb_av]": "lb", "[in_i]": "in", "[degF]": "°F", "Cel": "°C"}
_MAX_TEXT = 80
_MAX_ITEMS = 3
_SHORT_INTERPRETATION = 12

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


@dataclass(frozen=True)
class References:
    """What lines may say about the resources they point to, resolved by the caller (FHIR reads).

    `names` holds display labels (a Practitioner's name, a Condition's display) keyed `Type/id`;
    `own` holds keys the caller verified to be in the patient's record, so they may be cited;
    `encounter_performers` maps an Encounter to the Practitioner who performed it, used when a request
    names no requester; `dates` holds the start day of referenced Encounters (a Condition's diagnosing
    visit); `server_base` is the FHIR base the resources came from (absolute references elsewhere are
    not this record's). A reference to a patient-owned type that is in neither `names` nor `own`
    (another patient, a RelatedPerson, a Condition not verified) is shown only as `NOT_SHOWN`.
    """

    names: Mapping[str, str] = field(default_factory=dict)
    own: frozenset[str] = frozenset()
    encounter_performers: Mapping[str, str] = field(default_factory=dict)
    dates: Mapping[str, str] = field(default_factory=dict)
    server_base: str | None = None

    def key(self, ref: Any) -> str | None:
        """`Type/id` of a Reference element (or string) on this server, else None."""
        parsed = reference_of(ref)
        return parsed.local_key(self.server_base) if parsed is not None else None

    def shown(self, ref: Mapping[str, Any]) -> bool:
        """Whether a line may name or cite what the Reference points to."""
        if not isinstance(ref.get("reference"), str):
            return True
        key = self.key(ref)
        if key is None:
            return False
        return key in self.names or key in self.own or key.partition("/")[0] in OUTSIDE_COMPARTMENTS

    def name(self, ref: Mapping[str, Any] | None) -> str | None:
        """The label of a Reference that may be shown: its own display, else the resolved name."""
        if not isinstance(ref, Mapping) or not self.shown(ref):
            return None
        if ref.get("display"):
            return str(ref["display"])
        key = self.key(ref)
        return self.names.get(key) if key else None


_NO_REFERENCES = References()


def _get(resource: Any, path: str) -> Any:
    node = resource
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _day(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and value else None


def _short(text: str, limit: int = _MAX_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def resource_date(resource: Resource) -> str | None:
    """The clinically relevant date-time of a resource (ISO string as stored), used to order lines."""
    for path in _DATE_PATHS.get(str(resource.get("resourceType")), _GENERIC_DATE_PATHS):
        value = _get(resource, path)
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


def _concepts(values: Any, limit: int = _MAX_ITEMS) -> str | None:
    texts = [t for t in (concept_text(v) for v in values or []) if t]
    if not texts:
        return None
    shown = ", ".join(dict.fromkeys(texts[:limit]))
    return shown + (f" +{len(texts) - limit}" if len(texts) > limit else "")


def _codings(concept: Any, limit: int = _MAX_ITEMS) -> str | None:
    if not isinstance(concept, Mapping):
        return None
    displays = [
        str(c["display"]) for c in concept.get("coding") or [] if isinstance(c, Mapping) and c.get("display")
    ]
    if concept.get("text") or len(displays) < 2:
        return concept_text(concept)
    shown = ", ".join(dict.fromkeys(displays[:limit]))
    return shown + (f" +{len(displays) - limit}" if len(displays) > limit else "")


def _code_of(concept: Any) -> set[str]:
    if not isinstance(concept, Mapping):
        return set()
    return {str(c.get("code")) for c in concept.get("coding") or [] if isinstance(c, Mapping)}


def _number(value: Any) -> str:
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
    text = f"{comparator}{_number(quantity['value'])}"
    return f"{text} {unit}" if unit else text


def value_text(element: Mapping[str, Any]) -> str | None:
    """An element's value[x] as text (quantity, concept, string, boolean, ...), or None."""
    if "valueQuantity" in element:
        return quantity_text(element["valueQuantity"])
    if "valueCodeableConcept" in element:
        return concept_text(element["valueCodeableConcept"])
    if "valueString" in element:
        return _short(str(element["valueString"]))
    if "valueBoolean" in element:
        return "yes" if element["valueBoolean"] else "no"
    if "valueInteger" in element:
        return str(element["valueInteger"])
    if "valueDateTime" in element:
        return _day(element["valueDateTime"])
    if "valueTime" in element:
        return str(element["valueTime"])
    if "valuePeriod" in element:
        period = element["valuePeriod"] or {}
        return f"{_day(period.get('start')) or '?'}–{_day(period.get('end')) or '?'}"
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


def _components(components: Sequence[Any]) -> str | None:
    comps = [c for c in components if isinstance(c, Mapping)]
    by_code = {code: c for c in comps for code in _code_of(c.get("code"))}
    if _BP_SYSTOLIC in by_code and _BP_DIASTOLIC in by_code:
        sys_q = by_code[_BP_SYSTOLIC].get("valueQuantity") or {}
        dia_q = by_code[_BP_DIASTOLIC].get("valueQuantity") or {}
        if sys_q.get("value") is not None and dia_q.get("value") is not None:
            unit = _unit(sys_q)
            text = f"{_number(sys_q['value'])}/{_number(dia_q['value'])}"
            return f"{text} {unit}" if unit else text
    parts = [f"{concept_text(c.get('code')) or 'component'}: {value_text(c) or 'no value'}" for c in comps]
    return "; ".join(parts) or None


def _reference_range(ranges: Any) -> str | None:
    for rng in ranges or []:
        if not isinstance(rng, Mapping):
            continue
        low, high = rng.get("low") or {}, rng.get("high") or {}
        if low.get("value") is not None and high.get("value") is not None:
            unit = _unit(high)
            text = f"ref {_number(low['value'])}–{_number(high['value'])}"
            return f"{text} {unit}" if unit else text
        if rng.get("text") and len(str(rng["text"])) <= 20:
            return f"ref {rng['text']}"
    return None


def _status(concept: Any) -> str | None:
    if isinstance(concept, str):
        return concept
    return concept_text(concept)


def _join(parts: Iterable[str | None]) -> str:
    return "; ".join(p for p in parts if p)


def _observation(r: Resource, refs: References) -> str:
    value = _components(r["component"]) if r.get("component") else None
    value = value or value_text(r) or (concept_text(r.get("dataAbsentReason")) and "no value")
    interp = _concepts(r.get("interpretation"), 1)
    extras = [
        interp if interp and len(interp) <= _SHORT_INTERPRETATION else None,
        _reference_range(r.get("referenceRange")),
    ]
    head = f"{concept_text(r.get('code')) or 'Observation'} {value or '(no value)'}"
    status = r.get("status")
    return _join(
        [head, *extras, status if status in ("preliminary", "amended", "entered-in-error") else None]
    )


def _condition(r: Resource, refs: References) -> str:
    onset = _day(r.get("onsetDateTime")) or _day(_get(r, "onsetPeriod.start"))
    recorded = _day(r.get("recordedDate"))
    encounter = refs.key(r.get("encounter"))
    visit = refs.dates.get(encounter) if encounter else None
    abated = _day(r.get("abatementDateTime")) or _day(_get(r, "abatementPeriod.end"))
    verification = _status(r.get("verificationStatus"))
    return _join(
        [
            concept_text(r.get("code")) or "Condition",
            _status(r.get("clinicalStatus")),
            f"recorded {recorded}" if recorded and recorded != onset else None,
            f"diagnosed at visit {visit}" if visit and visit != onset and not recorded else None,
            f"abated {abated}" if abated else None,
            verification if verification and verification != "confirmed" else None,
        ]
    )


def _dosage(dosages: Any) -> str | None:
    texts: list[str] = []
    for dosage in dosages or []:
        if not isinstance(dosage, Mapping):
            continue
        if dosage.get("text"):
            texts.append(_short(str(dosage["text"]), 60))
            continue
        parts: list[str] = []
        for dose_rate in dosage.get("doseAndRate") or []:
            dose = quantity_text((dose_rate or {}).get("doseQuantity"))
            if dose:
                parts.append(f"dose {dose}")
        repeat = _get(dosage, "timing.repeat") or {}
        if repeat.get("frequency") and repeat.get("period"):
            every = f"{_number(repeat['period'])} {repeat.get('periodUnit', '')}".strip()
            parts.append(f"{repeat['frequency']}x per {every}")
        if dosage.get("asNeededBoolean"):
            parts.append("as needed")
        if parts:
            texts.append(" ".join(parts))
    return "dosage " + " | ".join(texts[:2]) if texts else None


def _prescriber(r: Resource, refs: References) -> str | None:
    requester = r.get("requester")
    if isinstance(requester, Mapping) and not refs.shown(requester):
        return f"requester {NOT_SHOWN}"
    name = refs.name(requester)
    if name:
        return f"requester {name}"
    encounter = refs.key(r.get("encounter") or r.get("context"))
    performer = refs.encounter_performers.get(encounter) if encounter else None
    performer_name = refs.names.get(performer) if performer else None
    return f"encounter performer {performer_name}" if performer_name else None


def _reasons(r: Resource, refs: References) -> str | None:
    parts: list[str] = []
    for ref in r.get("reasonReference") or []:
        if not isinstance(ref, Mapping):
            continue
        if not refs.shown(ref):
            parts.append(NOT_SHOWN)
            continue
        key = refs.key(ref)
        label = refs.name(ref)
        if label and key:
            parts.append(f"{label} [{key}]")
        elif key:
            parts.append(f"[{key}]")
    code_text = _concepts(r.get("reasonCode"))
    if code_text:
        parts.append(code_text)
    return "reason " + ", ".join(parts) if parts else None


def _medication(r: Resource, refs: References) -> str:
    med = concept_text(r.get("medicationCodeableConcept")) or refs.name(r.get("medicationReference"))
    return med or "medication"


def _medication_request(r: Resource, refs: References) -> str:
    return _join(
        [
            _medication(r, refs),
            r.get("status"),
            _prescriber(r, refs),
            _reasons(r, refs),
            _dosage(r.get("dosageInstruction")),
        ]
    )


def _medication_event(r: Resource, refs: References) -> str:
    return _join(
        [_medication(r, refs), r.get("status"), _reasons(r, refs), _dosage(r.get("dosage") and [r["dosage"]])]
    )


def _immunization(r: Resource, refs: References) -> str:
    status = r.get("status")
    return _join([concept_text(r.get("vaccineCode")) or "vaccine", status if status != "completed" else None])


def _procedure(r: Resource, refs: References) -> str:
    status = r.get("status")
    ended = _day(_get(r, "performedPeriod.end"))
    start = _day(_get(r, "performedPeriod.start"))
    return _join(
        [
            concept_text(r.get("code")) or "Procedure",
            status if status != "completed" else None,
            f"until {ended}" if ended and ended != start else None,
            _reasons(r, refs),
        ]
    )


def _encounter(r: Resource, refs: References) -> str:
    cls = r.get("class")
    cls_text = (cls.get("display") or cls.get("code")) if isinstance(cls, Mapping) else None
    start, end = _day(_get(r, "period.start")), _day(_get(r, "period.end"))
    people = [refs.name(p.get("individual")) for p in r.get("participant") or [] if isinstance(p, Mapping)]
    with_text = ", ".join(dict.fromkeys(p for p in people if p))
    return _join(
        [
            f"{_concepts(r.get('type'), 1) or 'Encounter'}" + (f" ({cls_text})" if cls_text else ""),
            f"until {end}" if end and end != start else None,
            _reasons(r, refs),
            f"with {with_text}" if with_text else None,
        ]
    )


def _diagnostic_report(r: Resource, refs: References) -> str:
    results = len(r.get("result") or [])
    conclusion = r.get("conclusion")
    return _join(
        [
            concept_text(r.get("code")) or "DiagnosticReport",
            f"{results} results" if results else None,
            _concepts(r.get("conclusionCode")),
            _short(str(conclusion), 60) if conclusion else None,
        ]
    )


def _allergy(r: Resource, refs: References) -> str:
    kinds = [str(c) for c in r.get("category") or []] + (
        [str(r["criticality"])] if r.get("criticality") else []
    )
    reactions = [
        m
        for reaction in r.get("reaction") or []
        if isinstance(reaction, Mapping)
        for m in reaction.get("manifestation") or []
    ]
    return _join(
        [
            f"Allergy to {_codings(r.get('code')) or 'unknown substance'}"
            + (f" ({', '.join(kinds)})" if kinds else ""),
            _status(r.get("clinicalStatus")),
            f"reaction {_concepts(reactions)}" if reactions else None,
        ]
    )


def _care_plan(r: Resource, refs: References) -> str:
    categories = [c for c in r.get("category") or [] if "assess-plan" not in _code_of(c)]
    activities = [_get(a, "detail.code") for a in r.get("activity") or []]
    end = _day(_get(r, "period.end"))
    return _join(
        [
            _concepts(categories, 1) or concept_text(r.get("title")) or "Care plan",
            r.get("status"),
            f"until {end}" if end else None,
            f"activities {_concepts(activities)}" if any(activities) else None,
        ]
    )


def _patient(r: Resource, refs: References) -> str:
    names = [n for n in r.get("name") or [] if isinstance(n, Mapping)]
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    full = (
        (name.get("text") or " ".join([*(name.get("given") or []), name.get("family") or ""]).strip())
        if name
        else "Patient"
    )
    mrn = next(
        (
            i.get("value")
            for i in r.get("identifier") or []
            if isinstance(i, Mapping) and "MR" in _code_of(i.get("type"))
        ),
        None,
    )
    deceased = r.get("deceasedDateTime") or (r.get("deceasedBoolean") and "yes")
    return _join(
        [
            f"Patient {full}",
            r.get("gender"),
            f"born {r['birthDate']}" if r.get("birthDate") else None,
            f"MRN {mrn}" if mrn else None,
            f"deceased {_day(deceased) or deceased}" if deceased else None,
        ]
    )


def _document(r: Resource, refs: References) -> str:
    authors = [a for a in r.get("author") or [] if isinstance(a, Mapping)]
    names = [refs.name(a) if refs.shown(a) else NOT_SHOWN for a in authors]
    by = ", ".join(dict.fromkeys(n for n in names if n))
    return _join([concept_text(r.get("type")) or "Document", r.get("docStatus"), f"by {by}" if by else None])


def _imaging(r: Resource, refs: References) -> str:
    modalities = [_get(s, "modality") for s in r.get("series") or []]
    return _join(
        [
            _concepts(r.get("procedureCode"), 1) or "Imaging study",
            _concepts(modalities, 2),
            f"{r['numberOfInstances']} images" if r.get("numberOfInstances") else None,
        ]
    )


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


def _generic(r: Resource, refs: References) -> str:
    label = human_name(r)
    for key in (
        "code",
        "type",
        "vaccineCode",
        "medicationCodeableConcept",
        "suppliedItem.itemCodeableConcept",
    ):
        if label:
            break
        value = _get(r, key)
        label = _concepts(value, 1) if isinstance(value, list) else concept_text(value)
    status = r.get("status")
    return _join([f"{r.get('resourceType', 'Resource')}" + (f" {label}" if label else ""), _status(status)])


_RENDERERS: dict[str, Callable[[Resource, References], str]] = {
    "Observation": _observation,
    "Condition": _condition,
    "MedicationRequest": _medication_request,
    "MedicationAdministration": _medication_event,
    "MedicationStatement": _medication_event,
    "MedicationDispense": _medication_event,
    "Immunization": _immunization,
    "Procedure": _procedure,
    "Encounter": _encounter,
    "DiagnosticReport": _diagnostic_report,
    "AllergyIntolerance": _allergy,
    "CarePlan": _care_plan,
    "Patient": _patient,
    "DocumentReference": _document,
    "ImagingStudy": _imaging,
}


def render_resource(resource: Resource, refs: References | None = None) -> str:
    """One line: `<date> <what> <value/status/...> [Type/id]`."""
    body = _RENDERERS.get(str(resource.get("resourceType")), _generic)(resource, refs or _NO_REFERENCES)
    day = _day(resource_date(resource)) if resource.get("resourceType") != "Patient" else None
    text = f"{day} {body}" if day else body
    return f"{' '.join(text.split())} {citation(resource)}"


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token estimate (about four characters per token)."""
    return math.ceil(len(text) / 4)


def _newest_first(resources: Iterable[Resource]) -> list[Resource]:
    dated = [(resource_date(r) or "", i, r) for i, r in enumerate(resources)]
    dated.sort(key=lambda item: item[1])
    dated.sort(key=lambda item: item[0], reverse=True)
    return [r for _, _, r in dated]


def render_lines(
    resources: Iterable[Resource],
    token_budget: int,
    *,
    refs: References | None = None,
    total: int | None = None,
    hint: str = "narrow by code or date",
) -> str:
    """Cited lines, newest first, stopping before `token_budget` is passed; states how many were left out.

    `total` is the number of matches when `resources` is already a cut of them (the rest count as omitted).
    """
    ordered = _newest_first(resources)
    total = max(total if total is not None else 0, len(ordered))
    lines: list[str] = []
    used = 0
    for resource in ordered:
        line = render_resource(resource, refs)
        remaining = total - len(lines) - 1
        reserve = estimate_tokens(f"… {remaining} more not shown; {hint}") + 1 if remaining else 0
        cost = estimate_tokens(line) + 1
        if used + cost + reserve > token_budget:
            break
        lines.append(line)
        used += cost
    omitted = total - len(lines)
    if omitted:
        lines.append(f"… {omitted} more not shown; {hint}")
    return "\n".join(lines)
