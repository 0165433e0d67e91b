"""References in every literal form, base comparison, and Patient-compartment membership."""

from __future__ import annotations

import pytest

from clinicflow.fhir.references import (
    PATIENT_COMPARTMENT,
    InvalidReferenceError,
    belongs_to_patient,
    in_patient_compartment,
    parse_reference,
    patient_owners,
    reference_key,
    references_in,
    same_base,
    sole_patient,
)

BASE = "http://127.0.0.1:8080/fhir"


@pytest.mark.parametrize(
    ("text", "kind", "key", "base", "version"),
    [
        ("Patient/p1", "relative", "Patient/p1", None, None),
        ("Observation/o.1/_history/3", "relative", "Observation/o.1", None, "3"),
        ("http://127.0.0.1:8080/fhir/Patient/p1", "absolute", "Patient/p1", BASE, None),
        ("https://x.example/r4/Patient/p1/_history/2", "absolute", "Patient/p1", "https://x.example/r4", "2"),
        ("urn:uuid:7f3a0c1e-0000-4000-8000-000000000001", "urn", None, None, None),
        ("#med1", "contained", None, None, None),
        ("Patient?identifier=urn:mrn|42", "conditional", None, None, None),
    ],
)
def test_every_literal_form_parses(text: str, kind: str, key: str | None, base: str, version: str) -> None:
    ref = parse_reference(text)
    assert (ref.kind, ref.key, ref.base, ref.version) == (kind, key, base, version)


@pytest.mark.parametrize("text", ["", "patient/p1", "Patient/", "Patient/a b", "ftp://x/Patient/p1", "p1"])
def test_malformed_references_are_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidReferenceError, match=r"not a FHIR reference|non-empty"):
        parse_reference(text)


def test_only_references_to_the_server_in_use_are_local() -> None:
    assert same_base("HTTP://127.0.0.1:8080/fhir/", BASE)
    assert same_base("https://x.example:443/r4", "https://x.example/r4")
    assert not same_base("http://127.0.0.1:8081/fhir", BASE)
    assert reference_key({"reference": f"{BASE}/Patient/p1"}, BASE) == "Patient/p1"
    assert reference_key({"reference": "http://elsewhere.example/fhir/Patient/p1"}, BASE) is None
    assert reference_key({"reference": f"{BASE}/Patient/p1"}) is None, "no base known: only relative"
    assert reference_key({"reference": "Patient/p1"}) == "Patient/p1"
    assert reference_key({"display": "Dr. X"}) is None and reference_key({"reference": "junk"}) is None


def _obs(subject: str, **extra: object) -> dict[str, object]:
    return {"resourceType": "Observation", "id": "o", "subject": {"reference": subject}, **extra}


def test_membership_follows_the_compartment_definition() -> None:
    assert belongs_to_patient(_obs("Patient/p1"), "p1", BASE)
    assert not belongs_to_patient(_obs("Patient/p1"), "p2", BASE)
    assert belongs_to_patient(_obs(f"{BASE}/Patient/p1"), "p1", BASE)
    assert not belongs_to_patient(_obs("http://elsewhere.example/fhir/Patient/p1"), "p1", BASE)
    both = _obs("Patient/p1", performer=[{"reference": "Patient/p2"}])
    assert patient_owners(both) == {"p1", "p2"} and not belongs_to_patient(both, "p1")
    by_doctor = _obs("Patient/p1", performer=[{"reference": "Practitioner/d1"}])
    assert belongs_to_patient(by_doctor, "p1")
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}}
    assert sole_patient(condition) == "p1", "Condition's `patient` parameter reads Condition.subject"
    coverage = {"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p1"}}
    assert belongs_to_patient(coverage, "p1")
    related = {"resourceType": "RelatedPerson", "patient": {"reference": "Patient/p2"}}
    assert sole_patient(related) == "p2"
    assert not belongs_to_patient({"resourceType": "Practitioner", "id": "d"}, "p1")
    assert belongs_to_patient({"resourceType": "Patient", "id": "p1"}, "p1")
    assert not belongs_to_patient({"resourceType": "Patient", "id": "p1"}, "p2")
    contained = _obs("#pat", contained=[{"resourceType": "Patient", "id": "pat"}])
    assert patient_owners(contained) == {"#pat"}, "a contained Patient is nobody on this server"
    group = _obs("Group/g1")
    assert patient_owners(group) == frozenset() and not belongs_to_patient(group, "p1")


def test_compartment_table_and_reference_walk() -> None:
    assert PATIENT_COMPARTMENT["MedicationRequest"] == {"subject": ("subject",)}
    assert in_patient_compartment("RelatedPerson") and in_patient_compartment("Condition")
    assert not in_patient_compartment("Practitioner") and not in_patient_compartment("Medication")
    resource = {
        "resourceType": "MedicationRequest",
        "subject": {"reference": "Patient/p1"},
        "reasonReference": [{"reference": "Condition/c1"}],
        "contained": [{"resourceType": "Medication", "manufacturer": {"reference": "Organization/o1"}}],
    }
    refs = [r["reference"] for r in references_in(resource)]
    assert refs == ["Patient/p1", "Condition/c1", "Organization/o1"]
