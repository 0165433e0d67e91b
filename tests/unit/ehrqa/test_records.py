"""Reading FHIR folders into patient records: Synthea urn:uuid bundles, conditional references, NDJSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clinicflow.evals.ehrqa.records import RecordsError, RecordSet, read_records, records_from_resources
from tests.unit.ehrqa.fixtures import PATIENT_ID, corrupt, synthea_style_bundles, write_bundles


def test_urn_references_become_type_id_and_ids_are_kept(fixture_records: RecordSet) -> None:
    (record,) = fixture_records.records
    assert record.patient_id == PATIENT_ID
    text = json.dumps(record.resources)
    assert "urn:uuid:" not in text
    condition = record.by_type("Condition")[0]
    assert condition["subject"]["reference"] == f"Patient/{PATIENT_ID}"
    assert condition["encounter"]["reference"].startswith("Encounter/")


def test_conditional_practitioner_references_resolve_across_files(fixture_records: RecordSet) -> None:
    record = fixture_records.records[0]
    requests = record.by_type("MedicationRequest")
    practitioner = record.resolve(requests[0]["requester"])
    assert practitioner is not None and practitioner["resourceType"] == "Practitioner"
    medication = next(r for r in requests if "medicationReference" in r)
    resolved = record.resolve(medication["medicationReference"])
    assert resolved is not None and resolved["resourceType"] == "Medication"


def test_unknown_and_invalid_resources_are_skipped_and_named(tmp_path: Path) -> None:
    folder = write_bundles(corrupt(synthea_style_bundles(), kinds=("types",)), tmp_path)
    records = read_records(folder)
    assert len(records.skipped) == 2
    assert all("Invalid FHIR R4" in s for s in records.skipped)  # the loader's words
    kinds = {r["resourceType"] for r in records.records[0].resources}
    assert "MadeUpClinicalThing" not in kinds


def test_a_resource_whose_urn_reference_resolves_nowhere_is_skipped(tmp_path: Path) -> None:
    bundles = synthea_style_bundles()
    patient_file = next(k for k in bundles if k.startswith("Rosa"))
    condition = next(
        e for e in bundles[patient_file]["entry"] if e["resource"]["resourceType"] == "Condition"
    )
    condition["resource"]["encounter"] = {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}
    records = read_records(write_bundles(bundles, tmp_path))
    ids = {r["id"] for r in records.records[0].resources}
    assert condition["resource"]["id"] not in ids
    assert any("resolves to nothing" in s for s in records.skipped)


def test_ndjson_and_ids_from_full_url(tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male"}
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2020-01-02",
        "valueQuantity": {"value": 70.5, "unit": "kg"},
    }
    (tmp_path / "Patient.ndjson").write_text(json.dumps(patient) + "\n")
    (tmp_path / "Observation.ndjson").write_text(json.dumps(obs) + "\n\nnot json\n")
    records = read_records(tmp_path)
    assert [r.patient_id for r in records] == ["p1"]
    assert records.records[0].by_type("Observation")[0]["id"] == "o1"
    assert any("line 3" in s for s in records.skipped)


def test_no_patient_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": []})
    )
    with pytest.raises(RecordsError, match="No Patient"):
        read_records(tmp_path)
    with pytest.raises(RecordsError, match="No such file"):
        read_records(tmp_path / "missing")


def test_records_from_resources_groups_by_patient() -> None:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "b"},
        {"resourceType": "Patient", "id": "a"},
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/a"}},
        {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/b"}},
        {"resourceType": "Practitioner", "id": "d"},
    ]
    records = records_from_resources(resources)
    assert [r.patient_id for r in records] == ["a", "b"]
    assert [r["id"] for r in records.records[0].resources] == ["c1"]
    assert records.records[0].resolve({"reference": "Practitioner/d"}) == {
        "resourceType": "Practitioner",
        "id": "d",
    }
