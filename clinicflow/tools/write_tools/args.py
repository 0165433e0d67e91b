"""What a model may pass to each write tool: the tool names and their argument models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .scope import WRITABLE_TYPES

__all__ = [
    "ARGS_MODELS",
    "CREATE_MEDICATION_REQUEST",
    "CREATE_OBSERVATION",
    "CREATE_RESOURCE",
    "CREATE_SERVICE_REQUEST",
    "NDC_SYSTEM",
    "WRITE_TOOL_NAMES",
    "GeneralCreateArgs",
    "MedicationRequestArgs",
    "ObservationArgs",
    "ServiceRequestArgs",
    "WriteArgs",
    "code_system",
]

NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"

CREATE_OBSERVATION = "create_observation"
CREATE_MEDICATION_REQUEST = "create_medication_request"
CREATE_SERVICE_REQUEST = "create_service_request"
CREATE_RESOURCE = "create_resource"
WRITE_TOOL_NAMES: frozenset[str] = frozenset(
    {CREATE_OBSERVATION, CREATE_MEDICATION_REQUEST, CREATE_SERVICE_REQUEST, CREATE_RESOURCE}
)

_CODE_SYSTEMS = {
    "loinc": "http://loinc.org",
    "snomed": "http://snomed.info/sct",
    "sct": "http://snomed.info/sct",
    "snomedct": "http://snomed.info/sct",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "ndc": NDC_SYSTEM,
    "cpt": "http://www.ama-assn.org/go/cpt",
}


def code_system(value: str | None) -> str | None:
    """The system URL for a short name ("loinc", "ndc", ...); any other value as given, stripped."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    return _CODE_SYSTEMS.get(value.lower().replace(" ", "").replace("-", ""), value)


class WriteArgs(BaseModel):
    """Base of the argument models: unknown fields refused, text stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ObservationArgs(WriteArgs):
    """Arguments of `create_observation`: one measured value for the patient in context."""

    code_text: str = Field(min_length=1, description='What was measured: a flowsheet id or name, e.g. "BP".')
    code: str | None = Field(None, description="Optional code of the measurement, e.g. a LOINC code.")
    code_system: str | None = Field(None, description='System of `code`: "loinc", "snomed" or a URL.')
    category: str = Field(
        "vital-signs", description='Observation category, e.g. "vital-signs", "laboratory".'
    )
    value_string: str | None = Field(None, description='The value as text, e.g. "118/77 mmHg".')
    value: float | None = Field(None, description="The value as a number (give `unit` with it).")
    unit: str | None = Field(None, description='Unit of `value`, e.g. "mg/dL".')
    effective: str | None = Field(
        None, description="When it was measured, ISO 8601; default: the current time of the task."
    )


class MedicationRequestArgs(WriteArgs):
    """Arguments of `create_medication_request`: a medication order for the patient in context."""

    medication_code: str = Field(min_length=1, description='Medication code, e.g. the NDC "0338-1715-40".')
    medication_system: str = Field("ndc", description='System of the code: "ndc", "rxnorm" or a URL.')
    medication_name: str | None = Field(None, description="Display name of the medication.")
    dose_value: float = Field(description="Dose amount, e.g. 2.")
    dose_unit: str = Field(min_length=1, description='Dose unit, e.g. "g" or "mEq".')
    route: str | None = Field(None, description='Route, e.g. "IV" or "oral".')
    rate_value: float | None = Field(None, description="Rate or duration amount, e.g. 2 (for over 2 hours).")
    rate_unit: str | None = Field(None, description='Unit of the rate, e.g. "h".')
    authored_on: str | None = Field(None, description="When the order is written, ISO 8601; default: now.")
    note: str | None = Field(None, description="Free-text comment on the order.")


class ServiceRequestArgs(WriteArgs):
    """Arguments of `create_service_request`: a lab test, referral or procedure order for the patient."""

    code: str = Field(min_length=1, description='Code of what is ordered, e.g. LOINC "4548-4".')
    code_system: str = Field(description='System of the code: "loinc", "snomed" or a URL.')
    display: str | None = Field(None, description="Display name of what is ordered.")
    note: str | None = Field(None, description="Free-text comment, e.g. an SBAR referral note.")
    occurrence: str | None = Field(None, description="When it should be done, ISO 8601 date-time.")
    priority: Literal["routine", "urgent", "asap", "stat"] = Field("stat", description="Order priority.")
    authored_on: str | None = Field(None, description="When the order is signed, ISO 8601; default: now.")


class GeneralCreateArgs(WriteArgs):
    """Arguments of `create_resource`: any patient-owned FHIR R4 resource as JSON."""

    resource: dict[str, Any] = Field(
        description=(
            "The FHIR R4 resource as a JSON object with resourceType; the patient reference is set by the "
            f"system. Types: {', '.join(WRITABLE_TYPES)}."
        )
    )


ARGS_MODELS: dict[str, type[WriteArgs]] = {
    CREATE_OBSERVATION: ObservationArgs,
    CREATE_MEDICATION_REQUEST: MedicationRequestArgs,
    CREATE_SERVICE_REQUEST: ServiceRequestArgs,
    CREATE_RESOURCE: GeneralCreateArgs,
}
