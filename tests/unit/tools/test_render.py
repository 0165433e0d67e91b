"""One-line rendering of each resource type, ordering, token budget and the omitted count."""

from __future__ import annotations

from typing import Any

from clinicflow.tools.render import (
    NOT_SHOWN,
    References,
    estimate_tokens,
    render_lines,
    render_resource,
)

from . import records as rec


def test_observation_quantity_with_interpretation_and_range() -> None:
    obs = rec.observation("abc", "4548-4", "Hemoglobin A1c", "2023-04-02", 7.9)
    assert render_resource(obs) == "2023-04-02 Hemoglobin A1c 7.9 % [Observation/abc]"
    obs["interpretation"] = [{"coding": [{"code": "H", "display": "High"}]}]
    obs["referenceRange"] = [{"low": {"value": 4.0, "unit": "%"}, "high": {"value": 5.6, "unit": "%"}}]
    assert render_resource(obs) == "2023-04-02 Hemoglobin A1c 7.9 %; High; ref 4–5.6 % [Observation/abc]"


def test_observation_blood_pressure_components() -> None:
    assert render_resource(rec.blood_pressure("bp", "2023-04-02", 120.0, 80.0)) == (
        "2023-04-02 Blood pressure panel 120/80 mmHg [Observation/bp]"
    )


def test_observation_other_components_codeable_string_and_missing_values() -> None:
    panel = rec.observation("x", "1-1", "Panel", "2020-01-01")
    panel["component"] = [
        {"code": rec.concept(rec.LOINC, "2-2", "Part A"), "valueQuantity": {"value": 1.5, "unit": "{score}"}},
        {"code": rec.concept(rec.LOINC, "3-3", "Part B"), "valueString": "negative"},
    ]
    assert render_resource(panel) == "2020-01-01 Panel Part A: 1.5; Part B: negative [Observation/x]"
    smoke = rec.observation("s", "72166-2", "Tobacco smoking status", "2020-01-01")
    smoke["valueCodeableConcept"] = rec.concept(rec.SNOMED, "266919005", "Never smoked tobacco (finding)")
    assert render_resource(smoke) == (
        "2020-01-01 Tobacco smoking status Never smoked tobacco (finding) [Observation/s]"
    )
    empty = rec.observation("e", "77606-2", "Weight-for-length", "2020-01-01")
    assert render_resource(empty) == "2020-01-01 Weight-for-length (no value) [Observation/e]"


def test_condition_active_and_resolved() -> None:
    active = rec.condition("c1", "44054006", "Diabetes mellitus type 2 (disorder)", "2021-03-01")
    assert render_resource(active) == "2021-03-01 Diabetes mellitus type 2 (disorder); active [Condition/c1]"
    resolved = rec.condition("c2", "444814009", "Viral sinusitis (disorder)", "2019-01-10", "2019-01-24")
    assert render_resource(resolved) == (
        "2019-01-10 Viral sinusitis (disorder); resolved; abated 2019-01-24 [Condition/c2]"
    )


def test_condition_shows_the_diagnosing_visit_when_it_differs_from_onset() -> None:
    sinusitis = rec.condition(
        "c2", "444814009", "Viral sinusitis (disorder)", "2019-01-10", encounter_id="e2"
    )
    assert render_resource(sinusitis, References(dates={"Encounter/e2": "2019-01-12"})) == (
        "2019-01-10 Viral sinusitis (disorder); active; diagnosed at visit 2019-01-12 [Condition/c2]"
    )
    assert "visit" not in render_resource(sinusitis, References(dates={"Encounter/e2": "2019-01-10"}))
    sinusitis["recordedDate"] = "2019-01-11"
    assert render_resource(sinusitis, References(dates={"Encounter/e2": "2019-01-12"})) == (
        "2019-01-10 Viral sinusitis (disorder); active; recorded 2019-01-11 [Condition/c2]"
    )


def test_medication_request_requester_reason_and_dosage() -> None:
    med = rec.medication_request(
        "m1", "860975", "Metformin 500 MG", "2021-03-01", reason="c1", requester={"display": "Dr. Ann Lee"}
    )
    refs = References(names={"Condition/c1": "Diabetes mellitus type 2 (disorder)"})
    assert render_resource(med, refs) == (
        "2021-03-01 Metformin 500 MG; active; requester Dr. Ann Lee; "
        "reason Diabetes mellitus type 2 (disorder) [Condition/c1]; dosage dose 1 2x per 1 d "
        "[MedicationRequest/m1]"
    )


def test_medication_request_prescriber_from_the_encounter_performer() -> None:
    med = rec.medication_request(
        "m1", "313782", "Acetaminophen 325 MG", "2019-01-10", "stopped", encounter_id="e1"
    )
    med["dosageInstruction"] = [{"asNeededBoolean": True}]
    refs = References(
        names={"Practitioner/dr1": "Dr. Ann Lee"}, encounter_performers={"Encounter/e1": "Practitioner/dr1"}
    )
    assert render_resource(med, refs) == (
        "2019-01-10 Acetaminophen 325 MG; stopped; encounter performer Dr. Ann Lee; dosage as needed "
        "[MedicationRequest/m1]"
    )
    med["dosageInstruction"] = [{"text": "Take one tablet every 6 hours"}]
    assert "dosage Take one tablet every 6 hours" in render_resource(med)


def test_immunization_procedure_encounter_report() -> None:
    assert render_resource(rec.immunization("i1", "140", "Influenza", "2022-10-01")) == (
        "2022-10-01 Influenza [Immunization/i1]"
    )
    proc = {
        "resourceType": "Procedure",
        "id": "pr",
        "status": "completed",
        "code": rec.concept(rec.SNOMED, "1", "Appendectomy"),
        "performedPeriod": {"start": "2010-02-02T10:00:00Z", "end": "2010-02-03T10:00:00Z"},
        "reasonCode": [{"text": "Appendicitis"}],
    }
    assert render_resource(proc) == (
        "2010-02-02 Appendectomy; until 2010-02-03; reason Appendicitis [Procedure/pr]"
    )
    enc = rec.encounter("e1", "2021-03-01", performer="dr1")
    refs = References(names={"Practitioner/dr1": "Dr. Ann Lee"})
    assert render_resource(enc, refs) == (
        "2021-03-01 Encounter for problem (procedure) (ambulatory); with Dr. Ann Lee [Encounter/e1]"
    )
    report = {
        "resourceType": "DiagnosticReport",
        "id": "d1",
        "code": rec.concept(rec.LOINC, "58410-2", "CBC panel"),
        "effectiveDateTime": "2021-03-01",
        "result": [{"reference": "Observation/a"}, {"reference": "Observation/b"}],
    }
    assert render_resource(report) == "2021-03-01 CBC panel; 2 results [DiagnosticReport/d1]"


def test_allergy_care_plan_patient_and_generic() -> None:
    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "category": ["food"],
        "criticality": "high",
        "code": rec.concept(rec.SNOMED, "91935009", "Allergy to peanut"),
        "recordedDate": "2001-01-01",
        "reaction": [{"manifestation": [rec.concept(rec.SNOMED, "271807003", "Eruption of skin")]}],
    }
    assert render_resource(allergy) == (
        "2001-01-01 Allergy to Allergy to peanut (food, high); active; reaction Eruption of skin "
        "[AllergyIntolerance/a1]"
    )
    plan = {
        "resourceType": "CarePlan",
        "id": "cp",
        "status": "active",
        "category": [
            {"coding": [{"code": "assess-plan"}]},
            rec.concept(rec.SNOMED, "698360004", "Diabetes care"),
        ],
        "period": {"start": "2021-03-01"},
        "activity": [{"detail": {"code": rec.concept(rec.SNOMED, "160670007", "Diabetic diet")}}],
    }
    assert render_resource(plan) == "2021-03-01 Diabetes care; active; activities Diabetic diet [CarePlan/cp]"
    assert (
        render_resource(rec.patient())
        == "Patient Jane Q Doe; female; born 1970-05-01; MRN MRN-42 [Patient/p1]"
    )
    goal: dict[str, Any] = {"resourceType": "Goal", "id": "g", "status": "active", "startDate": "2020-01-01"}
    assert render_resource(goal) == "2020-01-01 Goal; active [Goal/g]"
    assert render_resource({"resourceType": "Basic", "id": "b"}) == "Basic [Basic/b]"


def test_lines_are_newest_first_with_citations() -> None:
    lines = render_lines([r for r in rec.record() if r["resourceType"] == "Observation"], 10_000).splitlines()
    dates = [line[:10] for line in lines]
    assert dates == sorted(dates, reverse=True)
    assert all(line.endswith("]") and "[Observation/" in line for line in lines)


def test_budget_stops_and_states_the_omitted_count() -> None:
    observations = [
        rec.observation(f"o{i}", "4548-4", "HbA1c", f"20{10 + i}-01-01", 7.0 + i / 10) for i in range(10)
    ]
    text = render_lines(observations, 60)
    lines = text.splitlines()
    assert estimate_tokens(text) <= 60 + 1
    assert lines[0] == "2019-01-01 HbA1c 7.9 % [Observation/o9]"
    shown = len(lines) - 1
    assert 0 < shown < 10
    assert lines[-1] == f"… {10 - shown} more not shown; narrow by code or date"


def test_total_counts_resources_left_out_before_rendering() -> None:
    observations = [rec.observation("o1", "4548-4", "HbA1c", "2020-01-01", 7.0)]
    assert (
        render_lines(observations, 1000, total=5).splitlines()[-1]
        == "… 4 more not shown; narrow by code or date"
    )
    assert render_lines([], 1000) == ""


def test_references_to_other_patients_and_servers_are_not_shown() -> None:
    med = rec.medication_request("m1", "860975", "Metformin 500 MG", "2021-03-01", reason="c1")
    med["requester"] = {"reference": "Patient/other", "display": "Other Patient Name"}
    line = render_resource(med, References(server_base="http://fhir.local/fhir"))
    assert "Other Patient Name" not in line and "Patient/other" not in line and "Condition/c1" not in line
    assert f"requester {NOT_SHOWN}" in line and f"reason {NOT_SHOWN}" in line
    verified = References(own=frozenset({"Condition/c1"}), server_base="http://fhir.local/fhir")
    assert "reason [Condition/c1]" in render_resource(med, verified)
    med["requester"] = {"reference": "http://elsewhere.example/fhir/Practitioner/d1", "display": "Dr. Far"}
    assert f"requester {NOT_SHOWN}" in render_resource(med, verified)
    med["requester"] = {"reference": "http://fhir.local/fhir/Practitioner/d1", "display": "Dr. Near"}
    assert "requester Dr. Near" in render_resource(med, verified)
