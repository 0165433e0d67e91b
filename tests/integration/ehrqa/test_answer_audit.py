"""Answer-key audit: 100 random answers re-derived from the raw bundles with FHIRPath agree."""

from __future__ import annotations

import random
from pathlib import Path

from clinicflow.evals.ehrqa.generator import generate_questions
from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.records import read_records
from tests.unit.ehrqa.audit import Audit


def _sample(questions: list[Question], n: int, seed: int) -> list[Question]:
    """One question of every type, then random ones up to n."""
    rng = random.Random(seed)
    by_type: dict[str, list[Question]] = {}
    for q in questions:
        by_type.setdefault(q.qtype, []).append(q)
    picked = [rng.choice(qs) for _, qs in sorted(by_type.items())]
    if len(picked) >= n:
        return rng.sample(picked, n)
    rest = [q for q in questions if q.id not in {p.id for p in picked}]
    return picked + rng.sample(rest, n - len(picked))


def test_100_random_answers_agree_with_fhirpath(
    cohort_dir: Path, demo_questions: list[Question], synthea_dir: Path
) -> None:
    synthea = generate_questions(read_records(synthea_dir), seed=0)
    sample = _sample(demo_questions, 80, seed=1) + _sample(synthea, 20, seed=2)
    assert len(sample) == 100
    audits = {folder: Audit(folder) for folder in (cohort_dir, synthea_dir)}
    synthea_ids = {q.id for q in synthea}
    for q in sample:
        audits[synthea_dir if q.id in synthea_ids else cohort_dir].check(q)
