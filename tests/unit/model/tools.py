"""Tools shared by the model unit tests: a patient-scoped record search with an injected patient id."""

from __future__ import annotations

from typing import Annotated, Literal

from langchain_core.tools import InjectedToolArg, tool
from langgraph.prebuilt import InjectedState
from pydantic import BaseModel


@tool
def search_record(
    resource_type: Literal["Observation", "Condition", "MedicationRequest"],
    patient_id: Annotated[str, InjectedState("patient_id")],
    code: str | None = None,
    date_from: str | None = None,
    limit: Annotated[int, InjectedToolArg] = 20,
) -> str:
    """Search the patient's record by resource type, code and earliest date."""
    return f"{patient_id} {resource_type} {code} {date_from} {limit}"


@tool
def record_manifest(patient_id: Annotated[str, InjectedState("patient_id")]) -> str:
    """List the resource types and codes in the patient's record."""
    return patient_id


class Dose(BaseModel):
    """A dose of a medication."""

    value: float
    unit: str


class Prescription(BaseModel):
    """A medication to prescribe, with its dose."""

    medication: str
    dose: Dose


TOOLS = [search_record, record_manifest]
