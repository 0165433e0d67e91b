"""One cited line per resource, by resource type: `render_resource`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .references import NO_REFERENCES, NOT_SHOWN, References
from .values import (
    Resource,
    citation,
    codes_of,
    codings_text,
    components_text,
    concept_text,
    concepts_text,
    day_of,
    human_name,
    joined,
    number_text,
    path_value,
    quantity_text,
    reference_range_text,
    resource_date,
    shortened,
    status_text,
    value_text,
)

__all__ = ["render_resource"]

_SHORT_INTERPRETATION = 12


def _observation(r: Resource, refs: References) -> str:
    value = components_text(r["component"]) if r.get("component") else None
    value = value or value_text(r) or (concept_text(r.get("dataAbsentReason")) and "no value")
    interp = concepts_text(r.get("interpretation"), 1)
    extras = [
        interp if interp and len(interp) <= _SHORT_INTERPRETATION else None,
        reference_range_text(r.get("referenceRange")),
    ]
    head = f"{concept_text(r.get('code')) or 'Observation'} {value or '(no value)'}"
    status = r.get("status")
    return joined(
        [head, *extras, status if status in ("preliminary", "amended", "entered-in-error") else None]
    )


def _condition(r: Resource, refs: References) -> str:
    onset = day_of(r.get("onsetDateTime")) or day_of(path_value(r, "onsetPeriod.start"))
    recorded = day_of(r.get("recordedDate"))
    encounter = refs.key(r.get("encounter"))
    visit = refs.dates.get(encounter) if encounter else None
    abated = day_of(r.get("abatementDateTime")) or day_of(path_value(r, "abatementPeriod.end"))
    verification = status_text(r.get("verificationStatus"))
    return joined(
        [
            concept_text(r.get("code")) or "Condition",
            status_text(r.get("clinicalStatus")),
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
            texts.append(shortened(str(dosage["text"]), 60))
            continue
        parts: list[str] = []
        for dose_rate in dosage.get("doseAndRate") or []:
            dose = quantity_text((dose_rate or {}).get("doseQuantity"))
            if dose:
                parts.append(f"dose {dose}")
        repeat = path_value(dosage, "timing.repeat") or {}
        if repeat.get("frequency") and repeat.get("period"):
            every = f"{number_text(repeat['period'])} {repeat.get('periodUnit', '')}".strip()
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
    code_text = concepts_text(r.get("reasonCode"))
    if code_text:
        parts.append(code_text)
    return "reason " + ", ".join(parts) if parts else None


def _medication(r: Resource, refs: References) -> str:
    med = concept_text(r.get("medicationCodeableConcept")) or refs.name(r.get("medicationReference"))
    return med or "medication"


def _medication_request(r: Resource, refs: References) -> str:
    return joined(
        [
            _medication(r, refs),
            r.get("status"),
            _prescriber(r, refs),
            _reasons(r, refs),
            _dosage(r.get("dosageInstruction")),
        ]
    )


def _medication_event(r: Resource, refs: References) -> str:
    return joined(
        [_medication(r, refs), r.get("status"), _reasons(r, refs), _dosage(r.get("dosage") and [r["dosage"]])]
    )


def _immunization(r: Resource, refs: References) -> str:
    status = r.get("status")
    return joined(
        [concept_text(r.get("vaccineCode")) or "vaccine", status if status != "completed" else None]
    )


def _procedure(r: Resource, refs: References) -> str:
    status = r.get("status")
    ended = day_of(path_value(r, "performedPeriod.end"))
    start = day_of(path_value(r, "performedPeriod.start"))
    return joined(
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
    start, end = day_of(path_value(r, "period.start")), day_of(path_value(r, "period.end"))
    people = [refs.name(p.get("individual")) for p in r.get("participant") or [] if isinstance(p, Mapping)]
    with_text = ", ".join(dict.fromkeys(p for p in people if p))
    return joined(
        [
            f"{concepts_text(r.get('type'), 1) or 'Encounter'}" + (f" ({cls_text})" if cls_text else ""),
            f"until {end}" if end and end != start else None,
            _reasons(r, refs),
            f"with {with_text}" if with_text else None,
        ]
    )


def _diagnostic_report(r: Resource, refs: References) -> str:
    results = len(r.get("result") or [])
    conclusion = r.get("conclusion")
    return joined(
        [
            concept_text(r.get("code")) or "DiagnosticReport",
            f"{results} results" if results else None,
            concepts_text(r.get("conclusionCode")),
            shortened(str(conclusion), 60) if conclusion else None,
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
    return joined(
        [
            f"Allergy to {codings_text(r.get('code')) or 'unknown substance'}"
            + (f" ({', '.join(kinds)})" if kinds else ""),
            status_text(r.get("clinicalStatus")),
            f"reaction {concepts_text(reactions)}" if reactions else None,
        ]
    )


def _care_plan(r: Resource, refs: References) -> str:
    categories = [c for c in r.get("category") or [] if "assess-plan" not in codes_of(c)]
    activities = [path_value(a, "detail.code") for a in r.get("activity") or []]
    end = day_of(path_value(r, "period.end"))
    return joined(
        [
            concepts_text(categories, 1) or concept_text(r.get("title")) or "Care plan",
            r.get("status"),
            f"until {end}" if end else None,
            f"activities {concepts_text(activities)}" if any(activities) else None,
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
            if isinstance(i, Mapping) and "MR" in codes_of(i.get("type"))
        ),
        None,
    )
    deceased = r.get("deceasedDateTime") or (r.get("deceasedBoolean") and "yes")
    return joined(
        [
            f"Patient {full}",
            r.get("gender"),
            f"born {r['birthDate']}" if r.get("birthDate") else None,
            f"MRN {mrn}" if mrn else None,
            f"deceased {day_of(deceased) or deceased}" if deceased else None,
        ]
    )


def _document(r: Resource, refs: References) -> str:
    authors = [a for a in r.get("author") or [] if isinstance(a, Mapping)]
    names = [refs.name(a) if refs.shown(a) else NOT_SHOWN for a in authors]
    by = ", ".join(dict.fromkeys(n for n in names if n))
    return joined([concept_text(r.get("type")) or "Document", r.get("docStatus"), f"by {by}" if by else None])


def _imaging(r: Resource, refs: References) -> str:
    modalities = [path_value(s, "modality") for s in r.get("series") or []]
    return joined(
        [
            concepts_text(r.get("procedureCode"), 1) or "Imaging study",
            concepts_text(modalities, 2),
            f"{r['numberOfInstances']} images" if r.get("numberOfInstances") else None,
        ]
    )


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
        value = path_value(r, key)
        label = concepts_text(value, 1) if isinstance(value, list) else concept_text(value)
    status = r.get("status")
    return joined(
        [f"{r.get('resourceType', 'Resource')}" + (f" {label}" if label else ""), status_text(status)]
    )


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
    body = _RENDERERS.get(str(resource.get("resourceType")), _generic)(resource, refs or NO_REFERENCES)
    day = day_of(resource_date(resource)) if resource.get("resourceType") != "Patient" else None
    text = f"{day} {body}" if day else body
    return f"{' '.join(text.split())} {citation(resource)}"
