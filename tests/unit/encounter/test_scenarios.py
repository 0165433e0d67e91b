"""Scenario loaders: OSCE (MedQA, MIMIC-IV layouts), NEJM, and bad lines reported by number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clinicflow.evals.agentclinic import SHIPPED_SCENARIOS, ScenarioFileError, load_scenarios
from clinicflow.evals.agentclinic.scenarios import NEJM_OBJECTIVE

REPO = Path(__file__).resolve().parents[3]
DEV = REPO.parent / "shared" / "data" / "agentclinic" / "agentclinic_medqa_dev.jsonl"


def _osce(diagnosis: str = "Silicosis", **extra: Any) -> dict[str, Any]:
    return {
        "OSCE_Examination": {
            "Objective_for_Doctor": "Assess shortness of breath.",
            "Patient_Actor": {"Demographics": "60-year-old male", "History": "Short of breath for a year."},
            "Physical_Examination_Findings": {"Vital_Signs": {"Respiratory_Rate": "30/min"}},
            "Test_Results": {"Chest_X_Ray": "Eggshell calcification"},
            "Correct_Diagnosis": diagnosis,
            **extra,
        }
    }


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_dev_file_loads_every_scenario() -> None:
    if not DEV.exists():
        pytest.skip(f"AgentClinic dev scenarios not found at {DEV}")
    loaded = load_scenarios(DEV)
    assert loaded.errors == []
    assert len(loaded.cases) == 105
    assert loaded.formats == {"osce": 105}
    assert {c.kind for c in loaded.cases} == {"osce"}
    assert loaded.cases[0].case_id == "case-0001"
    assert loaded.cases[0].correct_diagnosis == "Seborrheic keratosis"
    assert len({c.case_id for c in loaded.cases}) == 105
    assert [c.case_id for c in load_scenarios(DEV, limit=3).cases] == ["case-0001", "case-0002", "case-0003"]


def test_shipped_scenarios_load_and_never_name_the_diagnosis_to_the_patient() -> None:
    loaded = load_scenarios(SHIPPED_SCENARIOS / "clinicflow_osce.jsonl")
    assert loaded.errors == []
    assert 3 <= len(loaded.cases) <= 5
    for case in loaded.cases:
        assert case.case_id.startswith("cf-")
        assert case.correct_diagnosis.lower() not in json.dumps(case.patient_info).lower()


def test_bad_lines_are_reported_by_number_and_skipped(tmp_path: Path) -> None:
    missing = _osce()
    del missing["OSCE_Examination"]["Correct_Diagnosis"]
    two_missing = _osce()
    del two_missing["OSCE_Examination"]["Test_Results"]
    two_missing["OSCE_Examination"]["Patient_Actor"] = None
    path = _write(
        tmp_path / "mixed.jsonl",
        [
            json.dumps(_osce()),
            json.dumps(missing),
            "",
            "{not json",
            json.dumps(two_missing),
            json.dumps(["a list"]),
            json.dumps({"unrelated": 1}),
            json.dumps(_osce(diagnosis="  ")),
            json.dumps(_osce("Asbestosis")),
        ],
    )
    loaded = load_scenarios(path)

    assert [c.correct_diagnosis for c in loaded.cases] == ["Silicosis", "Asbestosis"]
    assert [c.case_id for c in loaded.cases] == ["case-0001", "case-0009"]
    errors = {e.line: e.message for e in loaded.errors}
    assert sorted(errors) == [2, 4, 5, 6, 7, 8]
    assert errors[2] == "missing required field OSCE_Examination.Correct_Diagnosis"
    assert errors[4].startswith("not valid JSON")
    assert "OSCE_Examination.Patient_Actor" in errors[5] and "OSCE_Examination.Test_Results" in errors[5]
    assert errors[6] == "expected a JSON object"
    assert "OSCE_Examination" in errors[7]
    assert "Correct_Diagnosis" in errors[8]
    assert str(loaded.errors[0]) == "line 2: missing required field OSCE_Examination.Correct_Diagnosis"


def test_unusable_files_raise(tmp_path: Path) -> None:
    with pytest.raises(ScenarioFileError, match="not found"):
        load_scenarios(tmp_path / "absent.jsonl")
    with pytest.raises(ScenarioFileError, match=r"no valid scenario .* line 1: not valid JSON"):
        load_scenarios(_write(tmp_path / "bad.jsonl", ["nope"]))
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioFileError, match="not UTF-8"):
        load_scenarios(tmp_path / "binary.jsonl")


def test_mimic_layout_and_ids_and_fhir_link(tmp_path: Path) -> None:
    mimic = _osce("Mononucleosis")
    exam = mimic["OSCE_Examination"]
    exam["Patient_Actor"]["History"] = []
    exam["Test_Results"] = {"monospot": "positive", "WBC_Blood": "11.4"}
    exam["Physical_Examination_Findings"]["Abdominal_Examination"] = "Soft, non-tender."
    linked = {**_osce(), "id": "ward 3/bed 7", "fhir_patient_id": "pat-42"}
    duplicate = {**_osce(), "id": "ward 3/bed 7"}
    loaded = load_scenarios(
        _write(tmp_path / "m.jsonl", [json.dumps(mimic), json.dumps(linked), json.dumps(duplicate)])
    )
    assert loaded.cases[0].test_results == {"monospot": "positive", "WBC_Blood": "11.4"}
    assert loaded.cases[1].case_id == "ward_3_bed_7"
    assert loaded.cases[1].patient_id == "pat-42"
    assert [(e.line, e.message) for e in loaded.errors] == [(3, "duplicate scenario id 'ward_3_bed_7'")]


def _nejm(image_url: str, correct: str = "Exogenous ochronosis") -> dict[str, Any]:
    return {
        "image_url": image_url,
        "question": "A 55-year-old woman ... What is the most likely diagnosis?",
        "patient_info": "You are a 55-year-old woman with darkening skin on your face.",
        "physical_exams": "Skin biopsy: yellow-brown banana-shaped bodies in the dermis.",
        "answers": [{"text": "Melasma", "correct": False}, {"text": correct, "correct": True}],
    }


def test_nejm_cases_use_local_images_and_say_when_one_is_missing(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "IC20240111.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    no_answer = _nejm("https://example.org/images?id=IC1")
    no_answer["answers"] = [{"text": "Melasma", "correct": False}]
    no_fields = {"answers": [], "patient_info": "x"}
    path = _write(
        tmp_path / "nejm.jsonl",
        [
            json.dumps(_nejm("https://csvc.nejm.org/ContentServer/images?id=IC20240111&width=1500")),
            json.dumps(
                _nejm("https://csvc.nejm.org/ContentServer/images?id=IC20990101&width=1500", "Sarcoidosis")
            ),
            json.dumps(no_answer),
            json.dumps(no_fields),
        ],
    )
    loaded = load_scenarios(path)

    present, missing = loaded.cases
    assert present.image == tmp_path / "images" / "IC20240111.png"
    assert present.image_note is None
    assert present.objective == NEJM_OBJECTIVE
    assert present.correct_diagnosis == "Exogenous ochronosis"
    assert present.exam_findings.startswith("Skin biopsy")
    assert "answers" not in json.dumps(present.patient_info)
    assert missing.image is None
    assert missing.image_note is not None and "not available offline" in missing.image_note
    assert "IC20990101" in missing.image_note
    assert loaded.formats == {"nejm": 2}
    assert {c.kind for c in loaded.cases} == {"nejm"}
    errors = {e.line: e.message for e in loaded.errors}
    assert "exactly one entry with correct: true" in errors[3]
    assert "physical_exams" in errors[4] and "image_url" in errors[4]
