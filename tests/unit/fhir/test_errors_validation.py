"""parse_resource: R4B models, and FhirValidationError naming every bad path."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.observation import Observation

from clinicflow.fhir import FhirError, FhirValidationError, parse_resource


def test_valid_r4_resource_parses_to_the_r4b_model() -> None:
    obs = parse_resource(
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "valueQuantity": {"value": 7.9, "unit": "%"},
            "effectiveDateTime": "2023-04-02",
        }
    )
    assert isinstance(obs, Observation)
    assert obs.code.coding is not None and obs.code.coding[0].code == "4548-4"


def test_r4_only_shape_is_accepted() -> None:
    # R4 MedicationRequest.medicationCodeableConcept became `medication` (CodeableReference) in R5.
    med = parse_resource(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"text": "metformin"},
        }
    )
    assert type(med).__module__.startswith("fhir.resources.R4B")


def test_errors_list_every_path() -> None:
    with pytest.raises(FhirValidationError) as info:
        parse_resource(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": 1}]},
                "valueQuantity": {"value": "abc"},
                "bogus": 1,
            }
        )
    err = info.value
    assert isinstance(err, FhirError)
    assert err.resource_type == "Observation"
    paths = [p for p, _ in err.errors]
    assert paths == [
        "Observation.code.coding[0].system",
        "Observation.valueQuantity.value",
        "Observation.bogus",
    ]
    assert str(err).startswith("Invalid FHIR R4 Observation: Observation.code.coding[0].system: ")


def test_missing_required_element_is_reported() -> None:
    with pytest.raises(FhirValidationError, match=r"Observation\.code: Field required"):
        parse_resource({"resourceType": "Observation", "status": "final"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "resourceType: missing"),
        ({"resourceType": ""}, "resourceType: missing"),
        ({"resourceType": "Nonsense"}, "'Nonsense' is not a FHIR R4 resource type"),
        ([1, 2], "expected a JSON object, got list"),
    ],
)
def test_not_a_resource(data: object, message: str) -> None:
    with pytest.raises(FhirValidationError, match=message):
        parse_resource(data)  # type: ignore[arg-type]
