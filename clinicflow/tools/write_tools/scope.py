"""Scoping a resource to the patient in context: its subject, its references, its idempotency identifier
and its validation as FHIR R4."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from clinicflow.fhir import FhirValidationError, parse_resource
from clinicflow.fhir.references import (
    OUTSIDE_COMPARTMENTS,
    PATIENT_IDENTITY_TYPES,
    parse_reference,
    references_in,
)

from .prepared import WRITE_IDENTIFIER_SYSTEM, WriteArgumentsError

__all__ = [
    "WRITABLE_TYPES",
    "content_hash",
    "finalize_resource",
    "record_references",
    "validation_errors",
]

_SUBJECT_FIELD: dict[str, str] = {
    "Observation": "subject",
    "MedicationRequest": "subject",
    "ServiceRequest": "subject",
    "Condition": "subject",
    "Procedure": "subject",
    "CarePlan": "subject",
    "DiagnosticReport": "subject",
    "DocumentReference": "subject",
    "Communication": "subject",
    "CommunicationRequest": "subject",
    "MedicationStatement": "subject",
    "MedicationAdministration": "subject",
    "NutritionOrder": "patient",
    "AllergyIntolerance": "patient",
    "Immunization": "patient",
}
WRITABLE_TYPES: tuple[str, ...] = tuple(sorted(_SUBJECT_FIELD))
"""Resource types a write tool may create: those that belong to one patient."""

_SERVER_OWNED = ("id", "meta", "text")


def content_hash(resource: Mapping[str, Any]) -> str:
    """SHA-256 of the resource's canonical JSON, leaving out server-owned fields and write identifiers."""
    body = {k: v for k, v in resource.items() if k not in (*_SERVER_OWNED, "identifier")}
    others = [
        i
        for i in resource.get("identifier") or []
        if not (isinstance(i, Mapping) and i.get("system") == WRITE_IDENTIFIER_SYSTEM)
    ]
    if others:
        body["identifier"] = others
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _identifier_value(run_id: str, step: int, digest: str) -> str:
    return hashlib.sha256(f"{run_id}\x00{step}\x00{digest}".encode()).hexdigest()[:40]


def validation_errors(exc: FhirValidationError) -> list[str]:
    return [f"{path}: {msg}" for path, msg in exc.errors] or [str(exc)]


def _reference_problem(value: str, patient_id: str, contained: set[str]) -> str | None:
    """Why a reference may not be written (None when it may, or needs a server check)."""
    try:
        ref = parse_reference(value)
    except ValueError as exc:
        return str(exc)
    if ref.kind == "contained":
        return None if ref.id in contained else f"{value!r} names no contained resource"
    if ref.kind != "relative":
        return f"{value!r} is not a Type/id reference on this server; write references as Type/id"
    if ref.resource_type == "Patient" and ref.id != patient_id:
        return f"{value!r} points to another patient; a write may reference only the patient in context"
    if ref.resource_type in PATIENT_IDENTITY_TYPES - {"Patient", "RelatedPerson"}:
        return f"{value!r} names a {ref.resource_type}, which may hold other patients"
    return None


def record_references(resource: Mapping[str, Any], patient_id: str) -> list[str]:
    """The references to patient-owned resources (`Type/id`) that must be the patient's own, checked on
    the server by `FhirWriter.check_references`; raises `WriteArgumentsError` listing every reference
    that may not be written at all."""
    contained = {str(c.get("id")) for c in resource.get("contained") or [] if isinstance(c, Mapping)}
    problems: list[str] = []
    verify: dict[str, None] = {}
    for element in references_in(resource):
        value = element["reference"]
        problem = _reference_problem(value, patient_id, contained)
        if problem is not None:
            problems.append(problem)
            continue
        ref = parse_reference(value)
        rtype = ref.resource_type
        if ref.key and rtype != "Patient" and rtype not in OUTSIDE_COMPARTMENTS:
            verify[ref.key] = None
    if problems:
        raise WriteArgumentsError("refused: " + "; ".join(dict.fromkeys(problems)))
    return list(verify)


def finalize_resource(
    resource: Mapping[str, Any],
    *,
    patient_id: str,
    run_id: str,
    step: int,
    validate: bool = True,
) -> tuple[dict[str, Any], str, str, list[str]]:
    """Scope a resource to the patient and add its idempotency identifier.

    Returns (resource, identifier value, content hash, notes on what was changed). Raises
    `WriteArgumentsError` for a reference that may not be written (another patient, another server, a
    urn or search) and, with `validate`, listing every FHIR R4 validation error.
    """
    if not isinstance(resource, Mapping):
        raise WriteArgumentsError(f"a resource must be a JSON object, got {type(resource).__name__}")
    resource_type = resource.get("resourceType")
    field_name = _SUBJECT_FIELD.get(resource_type) if isinstance(resource_type, str) else None
    if field_name is None:
        raise WriteArgumentsError(
            f"cannot create resourceType {resource_type!r}; use one of {', '.join(WRITABLE_TYPES)}"
        )
    out = copy.deepcopy(dict(resource))
    notes: list[str] = []
    for key in _SERVER_OWNED:
        if key in out:
            notes.append(f"dropped server-owned field {key!r}")
            out.pop(key)
    wanted = {"reference": f"Patient/{patient_id}"}
    given = out.get(field_name)
    if given is not None and not (
        isinstance(given, Mapping) and given.get("reference") == wanted["reference"]
    ):
        raise WriteArgumentsError(
            f"refused: {field_name} must be the patient in context (Patient/{patient_id}) or left out"
        )
    out[field_name] = wanted
    record_references(out, patient_id)
    identifiers = [
        i
        for i in out.get("identifier") or []
        if not (isinstance(i, Mapping) and i.get("system") == WRITE_IDENTIFIER_SYSTEM)
    ]
    digest = content_hash({**out, "identifier": identifiers})
    value = _identifier_value(run_id, step, digest)
    out["identifier"] = [*identifiers, {"system": WRITE_IDENTIFIER_SYSTEM, "value": value}]
    if validate:
        try:
            parse_resource(out)
        except FhirValidationError as exc:
            errors = validation_errors(exc)
            raise WriteArgumentsError(
                f"invalid FHIR R4 {resource_type}: " + "; ".join(errors), exc.errors
            ) from None
    return out, value, digest, notes
