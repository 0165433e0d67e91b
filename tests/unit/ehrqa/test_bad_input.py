"""Bad input gives fewer questions, never wrong ones: every answer is re-derived by the FHIRPath audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicflow.evals.ehrqa.generator import generate_questions
from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.records import read_records
from tests.unit.ehrqa.audit import Audit
from tests.unit.ehrqa.fixtures import corrupt, synthea_style_bundles, write_bundles


def _generate(folder: Path) -> list[Question]:
    return generate_questions(read_records(folder), seed=0, per_patient=10_000)


@pytest.mark.parametrize("kinds", [("dates",), ("displays",), ("types",), ("dates", "displays", "types")])
def test_bad_input_never_gives_a_wrong_answer(
    kinds: tuple[str, ...], tmp_path: Path, all_questions: list[Question]
) -> None:
    folder = write_bundles(corrupt(synthea_style_bundles(), kinds=kinds), tmp_path)
    questions = _generate(folder)
    audit = Audit(folder)
    for q in questions:
        audit.check(q)
    if kinds == ("types",):
        assert len(questions) == len(all_questions)
    else:
        assert 0 < len(questions) < len(all_questions)


def test_missing_dates_drop_only_date_dependent_questions(tmp_path: Path) -> None:
    questions = _generate(write_bundles(corrupt(synthea_style_bundles(), kinds=("dates",)), tmp_path))
    sinusitis = [q for q in questions if q.params.get("code") == "444814009"]
    assert {q.qtype for q in sinusitis} >= {"cond_exists", "cond_count"}
    assert not {q.qtype for q in sinusitis} & {"cond_first_onset", "cond_before", "cond_days_between"}
    naproxen = [q for q in questions if q.params.get("code") == "849574"]
    assert naproxen and not any(q.kind in ("date",) or "in_year" in q.qtype for q in naproxen)
    assert not any(q.qtype == "rx_on_date_pick" for q in questions)
    assert not any(q.qtype == "imm_on_date_pick" for q in questions)


def test_codes_without_display_are_never_asked_about(tmp_path: Path) -> None:
    questions = _generate(write_bundles(corrupt(synthea_style_bundles(), kinds=("displays",)), tmp_path))
    hidden = {"59621000", "2339-0", "113", "308182"}
    for q in questions:
        assert not hidden & {str(v) for v in q.params.values()}, q.text
        assert q.params.get("group") != "38341003", q.text
    assert not any("hypertension" in q.text.casefold() for q in questions)
