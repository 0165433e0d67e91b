"""A small patient in the layout of real Synthea R4 output: urn:uuid transaction bundles, POST entries,
`urn:uuid:` references, practitioners in a separate bundle referenced by conditional identifier
references, one prescription naming a Medication resource. `corrupt` applies the bad-input variants."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

__all__ = ["NPI", "PATIENT_ID", "corrupt", "synthea_style_bundles", "write_bundles"]

NPI = "http://hl7.org/fhir/sid/us-npi"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"


def _id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ehrqa-fixture/{name}"))


PATIENT_ID = _id("patient")


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{resource['id']}",
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def _cc(system: str, code: str, display: str | None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    return {"coding": [coding], **({"text": display} if display else {})}


def _ts(day: str) -> str:
    return f"{day}T09:30:00-05:00"


_DOCTORS = [("9999990001", "Ana", "Lopez"), ("9999990002", "Ben", "Okafor"), ("9999990003", "Chen", "Wu")]


def _practitioner_bundle() -> dict[str, Any]:
    entries = []
    for npi, given, family in _DOCTORS:
        pid = _id(f"practitioner/{npi}")
        resource = {
            "resourceType": "Practitioner",
            "id": pid,
            "identifier": [{"system": NPI, "value": npi}],
            "active": True,
            "name": [{"family": f"{family}{npi[-2:]}", "given": [f"{given}{npi[-2:]}"], "prefix": ["Dr."]}],
            "gender": "female",
        }
        entries.append(
            {
                "fullUrl": f"urn:uuid:{pid}",
                "resource": resource,
                "request": {
                    "method": "POST",
                    "url": "Practitioner",
                    "ifNoneExist": f"identifier={NPI}|{npi}",
                },
            }
        )
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


def _doctor_ref(index: int) -> dict[str, str]:
    npi, given, family = _DOCTORS[index]
    return {
        "reference": f"Practitioner?identifier={NPI}|{npi}",
        "display": f"Dr. {given}{npi[-2:]} {family}{npi[-2:]}",
    }


def synthea_style_bundles() -> dict[str, dict[str, Any]]:
    """File name -> bundle: one patient bundle and one practitioner bundle."""
    patient_ref = {"reference": f"urn:uuid:{PATIENT_ID}", "display": "Mrs. Rosa Vega"}
    entries: list[dict[str, Any]] = [
        _entry(
            {
                "resourceType": "Patient",
                "id": PATIENT_ID,
                "name": [{"use": "official", "family": "Vega", "given": ["Rosa"], "prefix": ["Mrs."]}],
                "gender": "female",
                "birthDate": "1970-03-14",
            }
        )
    ]
    visits = [
        "2015-02-10",
        "2016-05-20",
        "2017-08-02",
        "2018-11-15",
        "2019-06-30",
        "2020-09-12",
        "2021-12-01",
        "2023-04-18",
    ]
    encounters = {}
    for i, day in enumerate(visits):
        eid = _id(f"encounter/{day}")
        encounters[day] = eid
        entries.append(
            _entry(
                {
                    "resourceType": "Encounter",
                    "id": eid,
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "type": [_cc(SNOMED, "185349003", "Encounter for check up (procedure)")],
                    "subject": patient_ref,
                    "participant": [{"individual": _doctor_ref(i % 3)}],
                    "period": {"start": _ts(day), "end": _ts(day)},
                }
            )
        )

    def condition(key: str, code: str, display: str | None, day: str, *, resolved: str | None = None) -> str:
        cid = _id(f"condition/{key}")
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "id": cid,
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "resolved" if resolved else "active",
                    }
                ]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "confirmed",
                    }
                ]
            },
            "code": _cc(SNOMED, code, display),
            "subject": {"reference": f"urn:uuid:{PATIENT_ID}"},
            "encounter": {"reference": f"urn:uuid:{encounters[day]}"},
            "onsetDateTime": _ts(day),
            "recordedDate": _ts(day),
        }
        if resolved:
            resource["abatementDateTime"] = _ts(resolved)
        entries.append(_entry(resource))
        return cid

    condition("hypertension", "59621000", "Essential hypertension (disorder)", "2015-02-10")
    diabetes = condition("diabetes", "44054006", "Diabetes mellitus type 2 (disorder)", "2016-05-20")
    condition("fracture", "65966004", "Fracture of forearm (disorder)", "2017-08-02", resolved="2017-10-01")
    sinus1 = condition(
        "sinusitis1", "444814009", "Viral sinusitis (disorder)", "2018-11-15", resolved="2018-12-01"
    )
    condition("sinusitis2", "444814009", "Viral sinusitis (disorder)", "2021-12-01", resolved="2021-12-20")
    condition("sprain", "44465007", "Sprain of ankle (disorder)", "2019-06-30", resolved="2019-08-01")

    medication_id = _id("medication/insulin")
    entries.append(
        _entry(
            {
                "resourceType": "Medication",
                "id": medication_id,
                "code": _cc(
                    RXNORM,
                    "106892",
                    "insulin isophane, human 70 UNT/ML / insulin, regular, human 30 UNT/ML "
                    "Injectable Suspension [Humulin]",
                ),
                "status": "active",
            }
        )
    )

    def prescription(
        key: str,
        code: str,
        display: str,
        day: str,
        status: str,
        doctor: int,
        reason: str | None = None,
        by_reference: bool = False,
    ) -> None:
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": _id(f"medicationrequest/{key}"),
            "status": status,
            "intent": "order",
            "subject": {"reference": f"urn:uuid:{PATIENT_ID}"},
            "encounter": {"reference": f"urn:uuid:{encounters[day]}"},
            "authoredOn": _ts(day),
            "requester": _doctor_ref(doctor),
        }
        if by_reference:
            resource["medicationReference"] = {"reference": f"urn:uuid:{medication_id}"}
        else:
            resource["medicationCodeableConcept"] = _cc(RXNORM, code, display)
        if reason:
            resource["reasonReference"] = [{"reference": f"urn:uuid:{reason}"}]
        entries.append(_entry(resource))

    prescription("lisinopril1", "314076", "lisinopril 10 MG Oral Tablet", "2015-02-10", "stopped", 0)
    prescription("lisinopril2", "314076", "lisinopril 10 MG Oral Tablet", "2020-09-12", "active", 2)
    prescription(
        "metformin", "860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet",
        "2016-05-20", "active", 1, reason=diabetes,
    )  # fmt: skip
    prescription(
        "amoxicillin", "308182", "Amoxicillin 250 MG Oral Capsule", "2018-11-15", "stopped", 0, reason=sinus1
    )
    prescription("naproxen", "849574", "Naproxen sodium 220 MG Oral Tablet", "2019-06-30", "stopped", 2)
    prescription("insulin", "106892", "", "2021-12-01", "active", 1, reason=diabetes, by_reference=True)

    def immunization(key: str, code: str, display: str, day: str) -> None:
        entries.append(
            _entry(
                {
                    "resourceType": "Immunization",
                    "id": _id(f"immunization/{key}"),
                    "status": "completed",
                    "vaccineCode": _cc(CVX, code, display),
                    "patient": {"reference": f"urn:uuid:{PATIENT_ID}"},
                    "encounter": {"reference": f"urn:uuid:{encounters[day]}"},
                    "occurrenceDateTime": _ts(day),
                    "primarySource": True,
                }
            )
        )

    for day in ("2015-02-10", "2016-05-20", "2018-11-15", "2020-09-12", "2023-04-18"):
        immunization(f"flu/{day}", "140", "Influenza, seasonal, injectable, preservative free", day)
    immunization("td", "113", "Td (adult), 5 Lf tetanus toxoid, preservative free, adsorbed", "2017-08-02")
    covid = "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"
    immunization("covid1", "208", covid, "2021-12-01")

    def observation(key: str, day: str, body: dict[str, Any], category: str = "vital-signs") -> None:
        entries.append(
            _entry(
                {
                    "resourceType": "Observation",
                    "id": _id(f"observation/{key}/{day}"),
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": category,
                                }
                            ]
                        }
                    ],
                    "subject": {"reference": f"urn:uuid:{PATIENT_ID}"},
                    "encounter": {"reference": f"urn:uuid:{encounters[day]}"},
                    "effectiveDateTime": _ts(day),
                    "issued": _ts(day),
                    **body,
                }
            )
        )

    def quantity(value: float, unit: str) -> dict[str, Any]:
        return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}

    weights = [82.3, 84.1, 85.0, 83.7, 86.2, 88.4, 87.9, 85.5]
    glucose = [101.0, 135.2, 128.4, 142.9, 120.6, 131.0, 118.3, 125.7]
    systolic = [128.0, 134.0, 131.0, 138.0, 129.0, 141.0, 136.0, 132.0]
    for i, day in enumerate(visits):
        observation(
            "weight",
            day,
            {"code": _cc(LOINC, "29463-7", "Body Weight"), "valueQuantity": quantity(weights[i], "kg")},
        )
        observation(
            "glucose",
            day,
            {
                "code": _cc(LOINC, "2339-0", "Glucose [Mass/volume] in Blood"),
                "valueQuantity": quantity(glucose[i], "mg/dL"),
            },
            "laboratory",
        )
        observation(
            "bp",
            day,
            {
                "code": _cc(LOINC, "85354-9", "Blood pressure panel with all children optional"),
                "component": [
                    {
                        "code": _cc(LOINC, "8480-6", "Systolic Blood Pressure"),
                        "valueQuantity": quantity(systolic[i], "mm[Hg]"),
                    },
                    {
                        "code": _cc(LOINC, "8462-4", "Diastolic Blood Pressure"),
                        "valueQuantity": quantity(80.0 + i, "mm[Hg]"),
                    },
                ],
            },
        )
        smoker = (
            ("449868002", "Smokes tobacco daily (finding)") if i < 4 else ("8517006", "Ex-smoker (finding)")
        )
        observation(
            "smoking",
            day,
            {
                "code": _cc(LOINC, "72166-2", "Tobacco smoking status"),
                "valueCodeableConcept": _cc(SNOMED, *smoker),
            },
            "social-history",
        )
    patient = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return {
        f"Rosa_Vega_{PATIENT_ID}.json": patient,
        "practitionerInformation1700000000.json": _practitioner_bundle(),
    }


def corrupt(bundles: dict[str, dict[str, Any]], *, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Bad-input variants: 'dates' drops dates, 'displays' drops displays, 'types' adds unknown types."""
    out = copy.deepcopy(bundles)
    patient_file = next(k for k in out if k.startswith("Rosa"))
    entries = out[patient_file]["entry"]
    for entry in entries:
        r = entry["resource"]
        if "dates" in kinds:
            if r["resourceType"] == "Condition" and r["id"] == _id("condition/sinusitis2"):
                del r["onsetDateTime"]
            if r["resourceType"] == "Observation" and r["id"] == _id("observation/weight/2019-06-30"):
                del r["effectiveDateTime"]
            if r["resourceType"] == "MedicationRequest" and r["id"] == _id("medicationrequest/naproxen"):
                del r["authoredOn"]
            if r["resourceType"] == "Immunization" and r["id"] == _id("immunization/flu/2018-11-15"):
                r["occurrenceString"] = "autumn 2018"
                del r["occurrenceDateTime"]
        if "displays" in kinds:
            concept = r.get("code") or r.get("vaccineCode") or r.get("medicationCodeableConcept") or {}
            for coding in concept.get("coding", []):
                if coding.get("code") in ("59621000", "2339-0", "113", "308182"):
                    coding.pop("display", None)
                    concept.pop("text", None)
    if "types" in kinds:
        entries.append(
            _entry(
                {
                    "resourceType": "MadeUpClinicalThing",
                    "id": _id("unknown/1"),
                    "subject": {"reference": f"urn:uuid:{PATIENT_ID}"},
                }
            )
        )
        entries.append(
            _entry(
                {
                    "resourceType": "Observation",
                    "id": _id("unknown/2"),
                    "status": "final",
                    "code": _cc(LOINC, "99999-9", "Broken observation"),
                    "subject": {"reference": f"urn:uuid:{PATIENT_ID}"},
                    "effectiveDateTime": "not a date",
                    "valueQuantity": {"value": "high"},
                }
            )
        )
    return out


def write_bundles(bundles: dict[str, dict[str, Any]], folder: Path) -> Path:
    """Write bundles as JSON files into `folder` (created); return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, bundle in bundles.items():
        (folder / name).write_text(json.dumps(bundle, indent=1), encoding="utf-8")
    return folder
