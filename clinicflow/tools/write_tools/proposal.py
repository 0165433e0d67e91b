"""From a write tool call to the exact resource it asks for: the FHIR body its arguments describe, scoped
to the patient and validated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .args import (
    ARGS_MODELS,
    WRITE_TOOL_NAMES,
    GeneralCreateArgs,
    MedicationRequestArgs,
    ObservationArgs,
    ServiceRequestArgs,
    WriteArgs,
    code_system,
)
from .prepared import PreparedWrite, WriteArgumentsError
from .scope import finalize_resource

__all__ = ["OBSERVATION_CATEGORY_SYSTEM", "prepare_write"]

OBSERVATION_CATEGORY_SYSTEM = "http://hl7.org/fhir/observation-category"
"""Category system that Epic's Observation.Create (Vitals) documents, and MedAgentBench scores against."""

_CATEGORY_DISPLAY = {
    "vital-signs": "Vital Signs",
    "laboratory": "Laboratory",
    "social-history": "Social History",
    "imaging": "Imaging",
    "procedure": "Procedure",
    "survey": "Survey",
    "exam": "Exam",
    "therapy": "Therapy",
    "activity": "Activity",
}


def _coding(system: str | None, code: str | None, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {}
    if system:
        coding["system"] = system
    if code:
        coding["code"] = code
    if display:
        coding["display"] = display
    return coding


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    number: float | int = int(value) if float(value).is_integer() else value
    return {"value": number, "unit": unit} if unit else {"value": number}


def _observation(args: ObservationArgs, now: str | None) -> dict[str, Any]:
    if args.value_string is None and args.value is None:
        raise WriteArgumentsError("give the measured value: value_string, or value with unit")
    category = args.category.strip()
    code: dict[str, Any] = {"text": args.code_text}
    if args.code:
        code = {"coding": [_coding(code_system(args.code_system), args.code)], "text": args.code_text}
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "category": [
            {"coding": [_coding(OBSERVATION_CATEGORY_SYSTEM, category, _CATEGORY_DISPLAY.get(category))]}
        ],
        "code": code,
        "status": "final",
    }
    effective = args.effective or now
    if effective:
        resource["effectiveDateTime"] = effective
    if args.value_string is not None:
        resource["valueString"] = args.value_string
    elif args.value is not None:
        resource["valueQuantity"] = _quantity(args.value, args.unit)
    return resource


def _medication_request(args: MedicationRequestArgs, now: str | None) -> dict[str, Any]:
    concept: dict[str, Any] = {
        "coding": [_coding(code_system(args.medication_system), args.medication_code, args.medication_name)]
    }
    if args.medication_name:
        concept["text"] = args.medication_name
    dose_and_rate: dict[str, Any] = {"doseQuantity": _quantity(args.dose_value, args.dose_unit)}
    if args.rate_value is not None:
        dose_and_rate["rateQuantity"] = _quantity(args.rate_value, args.rate_unit)
    dosage: dict[str, Any] = {"doseAndRate": [dose_and_rate]}
    if args.route:
        dosage["route"] = {"text": args.route}
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": concept,
        "dosageInstruction": [dosage],
    }
    authored = args.authored_on or now
    if authored:
        resource["authoredOn"] = authored
    if args.note:
        resource["note"] = [{"text": args.note}]
    return resource


def _service_request(args: ServiceRequestArgs, now: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": args.priority,
        "code": {"coding": [_coding(code_system(args.code_system), args.code, args.display)]},
    }
    authored = args.authored_on or now
    if authored:
        resource["authoredOn"] = authored
    if args.occurrence:
        resource["occurrenceDateTime"] = args.occurrence
    if args.note:
        resource["note"] = [{"text": args.note}]
    return resource


def _build(tool: str, args: WriteArgs, now: str | None) -> dict[str, Any]:
    if isinstance(args, ObservationArgs):
        return _observation(args, now)
    if isinstance(args, MedicationRequestArgs):
        return _medication_request(args, now)
    if isinstance(args, ServiceRequestArgs):
        return _service_request(args, now)
    if isinstance(args, GeneralCreateArgs):
        return dict(args.resource)
    raise WriteArgumentsError(f"unknown write tool {tool!r}")


def _args_errors(exc: ValidationError) -> str:
    problems = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "arguments"
        problems.append(f"{where} is required" if e["type"] == "missing" else f"{where}: {e['msg']}")
    return "; ".join(problems)


def prepare_write(
    tool: str,
    args: Mapping[str, Any],
    *,
    patient_id: str | None,
    run_id: str,
    step: int,
    tool_call_id: str = "",
    now: str | None = None,
) -> PreparedWrite:
    """The exact, validated resource a write tool call asks for; raises `WriteArgumentsError` otherwise."""
    model = ARGS_MODELS.get(tool)
    if model is None:
        raise WriteArgumentsError(
            f"unknown write tool {tool!r}; use one of {', '.join(sorted(WRITE_TOOL_NAMES))}"
        )
    if not patient_id:
        raise WriteArgumentsError("no patient is in context, so nothing can be written")
    try:
        parsed = model.model_validate(dict(args))
    except ValidationError as exc:
        raise WriteArgumentsError(_args_errors(exc)) from None
    resource, value, digest, notes = finalize_resource(
        _build(tool, parsed, now), patient_id=patient_id, run_id=run_id, step=step
    )
    return PreparedWrite(
        tool=tool,
        tool_call_id=tool_call_id,
        resource_type=resource["resourceType"],
        resource=resource,
        identifier_value=value,
        patient_id=patient_id,
        run_id=run_id,
        step=step,
        content_hash=digest,
        notes=notes,
    )
