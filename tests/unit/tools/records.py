"""Small hand-written FHIR R4 resources in Synthea's shapes, for the tools' unit tests."""

from __future__ import annotations

from typing import Any

PID = "p1"
OTHER = "p2"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def patient(pid: str = PID) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {"system": "https://example.org/synthea", "value": "abc"},
            {
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                },
                "system": "http://hospital.smarthealthit.org",
                "value": "MRN-42",
            },
        ],
        "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"], "prefix": ["Ms."]}],
        "gender": "female",
        "birthDate": "1970-05-01",
    }


def observation(
    oid: str, code: str, display: str, day: str, value: float | None = None, unit: str = "%", pid: str = PID
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": concept(LOINC, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": f"{day}T10:00:00+00:00",
    }
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org"}
    return resource


def blood_pressure(oid: str, day: str, systolic: float, diastolic: float) -> dict[str, Any]:
    resource = observation(oid, "85354-9", "Blood pressure panel", day)
    resource["component"] = [
        {
            "code": concept(LOINC, "8480-6", "Systolic blood pressure"),
            "valueQuantity": {"value": systolic, "unit": "mm[Hg]"},
        },
        {
            "code": concept(LOINC, "8462-4", "Diastolic blood pressure"),
            "valueQuantity": {"value": diastolic, "unit": "mm[Hg]"},
        },
    ]
    return resource


def condition(
    cid: str,
    code: str,
    display: str,
    onset: str,
    abated: str | None = None,
    pid: str = PID,
    encounter_id: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "resolved" if abated else "active",
                }
            ]
        },
        "verificationStatus": {"coding": [{"code": "confirmed"}]},
        "code": concept(SNOMED, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": f"{onset}T08:00:00+00:00",
    }
    if abated:
        resource["abatementDateTime"] = f"{abated}T08:00:00+00:00"
    if encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    return resource


def practitioner(prid: str, given: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": prid,
        "name": [{"family": family, "given": [given], "prefix": ["Dr."]}],
    }


def encounter(eid: str, day: str, performer: str | None = None, pid: str = PID) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"code": "AMB", "display": "ambulatory"},
        "type": [concept(SNOMED, "185347001", "Encounter for problem (procedure)")],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": f"{day}T09:00:00+00:00", "end": f"{day}T09:30:00+00:00"},
    }
    if performer:
        resource["participant"] = [
            {
                "type": [{"coding": [{"code": "PPRF", "display": "primary performer"}]}],
                "individual": {"reference": f"Practitioner/{performer}"},
            }
        ]
    return resource


def medication_request(
    mid: str,
    code: str,
    display: str,
    day: str,
    status: str = "active",
    *,
    encounter_id: str | None = None,
    reason: str | None = None,
    requester: dict[str, Any] | None = None,
    pid: str = PID,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept(RXNORM, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": f"{day}T11:00:00+00:00",
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 1}}],
            }
        ],
    }
    if encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    if reason:
        resource["reasonReference"] = [{"reference": f"Condition/{reason}"}]
    if requester:
        resource["requester"] = requester
    return resource


def immunization(iid: str, code: str, display: str, day: str, pid: str = PID) -> dict[str, Any]:
    return {
        "resourceType": "Immunization",
        "id": iid,
        "status": "completed",
        "vaccineCode": concept(CVX, code, display),
        "patient": {"reference": f"Patient/{pid}"},
        "occurrenceDateTime": f"{day}T09:10:00+00:00",
    }


def record() -> list[dict[str, Any]]:
    """Patient p1 with a few resources of several types, plus one resource of patient p2."""
    return [
        patient(),
        patient(OTHER),
        practitioner("dr1", "Ann", "Lee"),
        encounter("e1", "2021-03-01", performer="dr1"),
        condition("c1", "44054006", "Diabetes mellitus type 2 (disorder)", "2021-03-01"),
        encounter("e2", "2019-01-12"),
        condition(
            "c2",
            "444814009",
            "Viral sinusitis (disorder)",
            "2019-01-10",
            abated="2019-01-24",
            encounter_id="e2",
        ),
        condition("c9", "59621000", "Essential hypertension (disorder)", "2020-01-01", pid=OTHER),
        observation("o1", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "2021-03-01", 7.9),
        observation("o2", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "2022-06-15", 7.1),
        observation("o3", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "2023-04-02", 6.8),
        observation("o4", "29463-7", "Body Weight", "2023-04-02", 81.5, "kg"),
        blood_pressure("o5", "2023-04-02", 120, 80),
        observation("o9", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "2023-05-01", 9.9, pid=OTHER),
        medication_request(
            "m1",
            "860975",
            "24 HR Metformin hydrochloride 500 MG",
            "2021-03-01",
            encounter_id="e1",
            reason="c1",
        ),
        medication_request("m2", "313782", "Acetaminophen 325 MG Oral Tablet", "2019-01-10", "stopped"),
        immunization("i1", "140", "Influenza, seasonal, injectable, preservative free", "2022-10-01"),
        immunization("i2", "140", "Influenza, seasonal, injectable, preservative free", "2023-10-03"),
    ]
