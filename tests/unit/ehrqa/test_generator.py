"""Question generation on a Synthea-layout record: categories, forms, gold evidence, determinism, splits."""

from __future__ import annotations

import collections
import copy
from pathlib import Path
from typing import Any

from clinicflow.evals.ehrqa.generator import assign_splits, check_answer_balance, generate_questions
from clinicflow.evals.ehrqa.questions import CATEGORIES, Question
from clinicflow.evals.ehrqa.records import RecordSet, read_records
from tests.unit.ehrqa.fixtures import PATIENT_ID, synthea_style_bundles, write_bundles


def test_every_category_and_answer_form_is_generated(all_questions: list[Question]) -> None:
    assert {q.category for q in all_questions} == set(CATEGORIES)
    assert {q.form for q in all_questions} == {"multiple_choice", "yes_no", "short_answer"}
    kinds = {q.kind for q in all_questions}
    assert {"date", "number", "integer", "name", "text", "choice", "yes_no"} <= kinds
    per_category = collections.defaultdict(set)
    for q in all_questions:
        per_category[q.category].add(q.qtype)
    assert all(len(types) >= 3 for types in per_category.values()), dict(per_category)


def test_questions_carry_gold_evidence_and_calls(all_questions: list[Question]) -> None:
    for q in all_questions:
        assert q.patient_id == PATIENT_ID
        assert q.gold_calls, q.id
        assert q.text.splitlines()[-1].startswith("Answer"), q.text
        if q.kind == "choice":
            assert len(q.options) >= 3 and q.answer in "ABCD"[: len(q.options)]
            assert q.answer_text == f"{q.answer}. {q.options['ABCD'.index(q.answer)]}"
        if not q.refusal_ok:
            assert q.gold_ids, q.id
        for gold in q.gold_ids:
            assert gold.split("/")[0] in ("Condition", "MedicationRequest", "Immunization", "Observation")


def test_known_answers_of_the_fixture(all_questions: list[Question]) -> None:
    def find(qtype: str, fragment: str) -> Question:
        return next(q for q in all_questions if q.qtype == qtype and fragment in q.text)

    assert find("cond_first_onset", "Viral sinusitis").answer == "2018-11-15"
    assert find("cond_count", "Viral sinusitis").answer == "2"
    assert find("imm_last_date", "Influenza").answer == "2023-04-18"
    assert find("presc_name", "Naproxen").answer == "Dr. Chen03 Wu03"
    assert find("reason_condition", "Amoxicillin").answer == "Viral sinusitis"
    assert find("obs_latest", "Body Weight").answer_text == "85.5 kg"
    assert find("obs_latest", "Systolic").answer == "132"
    current = find("med_current", "lisinopril")
    assert (
        current.answer == "yes" and "As of 2023-04-18" in current.text and "status is active" in current.text
    )
    fracture = next(q for q in all_questions if q.qtype == "trans_exists" and "bone fracture" in q.text)
    assert fracture.answer == "yes" and fracture.gold_ids and fracture.gold_ids[0].startswith("Condition/")


def test_a_prescription_naming_a_medication_resource_is_found_by_day(all_questions: list[Question]) -> None:
    insulin = next(q for q in all_questions if q.qtype == "rx_first_date" and "Humulin" in q.text)
    assert insulin.answer == "2021-12-01"
    assert all(c.code is None and c.date_from == "2021-12-01" for c in insulin.gold_calls)


def test_generation_is_deterministic_per_seed(fixture_records: RecordSet) -> None:
    a = generate_questions(fixture_records, seed=7, per_patient=60)
    b = generate_questions(fixture_records, seed=7, per_patient=60)
    c = generate_questions(fixture_records, seed=8, per_patient=60)
    assert [q.model_dump() for q in a] == [q.model_dump() for q in b]
    assert [q.id for q in a] != [q.id for q in c]


def test_per_patient_cap_spreads_over_categories(fixture_records: RecordSet) -> None:
    questions = generate_questions(fixture_records, seed=0, per_patient=40)
    assert len(questions) == 40
    counts = collections.Counter(q.category for q in questions)
    assert set(counts) == set(CATEGORIES) and max(counts.values()) - min(counts.values()) <= 1
    assert len({q.id for q in questions}) == 40
    first_ten = {q.category for q in questions[:10]}
    assert first_ten == set(CATEGORIES)


def test_yes_no_questions_are_balanced(all_questions: list[Question], fixture_records: RecordSet) -> None:
    questions = generate_questions(fixture_records, seed=0, per_patient=100)
    answers = collections.Counter(q.answer for q in questions if q.kind == "yes_no")
    assert answers["yes"] and answers["no"]
    assert 0.3 <= answers["yes"] / (answers["yes"] + answers["no"]) <= 0.7


def test_splits_are_by_patient_and_deterministic() -> None:
    ids = [f"p{i}" for i in range(10)]
    splits = assign_splits(ids, seed=3)
    assert splits == assign_splits(list(reversed(ids)), seed=3)
    counts = collections.Counter(splits.values())
    assert counts == {"train": 5, "val": 3, "test": 2} or counts == {"train": 5, "val": 2, "test": 3}
    assert set(assign_splits(["a", "b", "c"], seed=0).values()) == {"train", "val", "test"}
    assert assign_splits(["only"], seed=0)["only"] in ("train", "val", "test")


ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def _icd_coded(bundles: dict[str, Any]) -> dict[str, Any]:
    """The bundles with every Condition coded in ICD-10-CM instead of SNOMED CT (as other generators do)."""
    out = copy.deepcopy(bundles)
    for bundle in out.values():
        for number, entry in enumerate(bundle.get("entry", [])):
            resource = entry["resource"]
            if resource["resourceType"] == "Condition":
                display = resource["code"]["coding"][0].get("display")
                resource["code"] = {
                    "coding": [{"system": ICD10CM, "code": f"Z{number:02d}.9", "display": display}]
                }
    return out


def test_an_icd_coded_cohort_gets_no_transitive_questions_and_is_told_why(tmp_path: Path) -> None:
    records = read_records(write_bundles(_icd_coded(synthea_style_bundles()), tmp_path))
    notes: list[str] = []
    questions = generate_questions(records, seed=0, per_patient=10_000, notes=notes)
    assert questions
    assert not [q for q in questions if q.category == "condition_existence_transitive"]
    assert any("condition_existence_transitive: skipped for 1 of 1 patients" in n for n in notes), notes


def test_no_category_keeps_a_single_constant_answer(all_questions: list[Question]) -> None:
    answers = collections.defaultdict(set)
    for q in all_questions:
        answers[q.category].add(q.answer)
    assert all(len(a) > 1 for a in answers.values()), dict(answers)


def test_a_category_with_one_answer_for_all_is_dropped_and_named(all_questions: list[Question]) -> None:
    noes = [
        q.model_copy(update={"category": "condition_existence_transitive", "answer": "no"})
        for q in all_questions[:5]
    ]
    others = [q for q in all_questions if q.category != "condition_existence_transitive"]
    kept, notes = check_answer_balance([*others, *noes])
    assert kept == others
    assert notes == ["condition_existence_transitive: dropped, all 5 questions have the answer 'no'"]
