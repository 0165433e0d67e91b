"""The generator on the demo cohort, on real-Synthea-layout bundles, and on records read from a server."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from clinicflow.evals.ehrqa.generator import generate_questions
from clinicflow.evals.ehrqa.questions import CATEGORIES, Question
from clinicflow.evals.ehrqa.records import RecordSet, read_records, records_from_server
from clinicflow.fhir import FhirClient


def _check_set(questions: list[Question], patients: int) -> None:
    assert {q.category for q in questions} == set(CATEGORIES)
    types = collections.defaultdict(set)
    for q in questions:
        types[q.category].add(q.qtype)
    assert all(len(t) >= 3 for t in types.values()), {c: sorted(t) for c, t in types.items()}
    assert len({q.patient_id for q in questions}) == patients
    assert len({(q.patient_id, q.text) for q in questions}) == len(questions)


def test_demo_cohort(demo_questions: list[Question], patient_ids: list[str]) -> None:
    _check_set(demo_questions, len(patient_ids))
    assert {q.patient_id for q in demo_questions} == set(patient_ids)
    per_patient = collections.Counter(q.patient_id for q in demo_questions)
    assert all(150 <= n <= 200 for n in per_patient.values()), per_patient
    assert {q.split for q in demo_questions} == {"train", "val", "test"}


def test_real_synthea_layout(synthea_dir: Path) -> None:
    records = read_records(synthea_dir)
    assert not records.skipped
    _check_set(generate_questions(records, seed=0), 1)


async def test_records_from_the_server_give_the_same_questions(
    fhir_client: FhirClient, demo_records: RecordSet, demo_questions: list[Question], patient_ids: list[str]
) -> None:
    served = await records_from_server(fhir_client, patient_ids=patient_ids)
    assert [r.patient_id for r in served] == sorted(patient_ids)
    from_server = generate_questions(served, seed=0)
    key = lambda q: (q.id, q.answer, tuple(q.gold_ids))  # noqa: E731
    assert sorted(map(key, from_server)) == sorted(map(key, demo_questions))


@pytest.mark.parametrize("n", [1, 2])
def test_per_patient_cap_holds_for_any_cohort_size(demo_records: RecordSet, n: int) -> None:
    records = RecordSet(demo_records.records[-n:])
    questions = generate_questions(records, seed=0, per_patient=50)
    assert len(questions) == 50 * n
