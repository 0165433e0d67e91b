"""Scoring: each answer kind's matcher, refusals, and accuracy as the mean over categories."""

from __future__ import annotations

from typing import Any

import pytest

from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.scoring import extract_choice, extract_date, extract_number, score, summarize


def _q(kind: str, answer: str, **extra: Any) -> Question:
    form = {"yes_no": "yes_no", "choice": "multiple_choice"}.get(kind, "short_answer")
    return Question(
        id="q1",
        patient_id="p",
        category="observation_value",
        qtype="t",
        form=form,
        kind=kind,
        text="?",
        answer=answer,
        answer_text=answer,
        reference_date="2024-01-01",
        **extra,
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("Yes [Condition/abc]", True), ("yes, since 2019", True), ("No.", False), ("It is not recorded", False)],
)
def test_yes_no(reply: str, expected: bool) -> None:
    assert score(_q("yes_no", "yes"), reply) is expected


def test_refusal_only_counts_where_allowed() -> None:
    assert score(_q("yes_no", "no", refusal_ok=True), "not found in the record")
    assert not score(_q("yes_no", "no"), "Not found in the record.")
    assert not score(_q("number", "7.9", tolerance=0.05), "not found in the record")


def test_multiple_choice() -> None:
    q = _q("choice", "B", options=["Sinusitis", "Viral sinusitis", "Otitis media", "Asthma"])
    assert score(q, "B")
    assert score(q, "(B) Viral sinusitis [Condition/x]")
    assert score(q, "The answer is B.")
    assert score(q, "viral sinusitis")
    assert not score(q, "A. Sinusitis")
    assert not score(q, "Sinusitis or asthma")
    assert extract_choice("D", ["a", "b", "c", "d"]) == "D"


def test_dates_in_many_forms() -> None:
    q = _q("date", "2023-04-02")
    for reply in (
        "2023-04-02",
        "On April 2, 2023 [Immunization/x]",
        "2 Apr 2023",
        "04/02/2023",
        "2023-04-02T10:00:00Z",
    ):
        assert score(q, reply), reply
    assert not score(q, "2023-04-03")
    assert extract_date("no date here") is None


def test_numbers_with_tolerance_and_dates_ignored() -> None:
    q = _q("number", "7.9", tolerance=0.05)
    assert score(q, "7.9 % on 2023-04-02")
    assert score(q, "On 2023-04-02 it was 7.92 %")
    assert not score(q, "8.0 %")
    assert score(_q("integer", "9075", tolerance=None), "9,075 days")
    assert score(_q("integer", "2"), "two doses")
    assert score(_q("integer", "0", refusal_ok=True), "none")
    assert extract_number("[Observation/12-34] value 5") == 5


def test_negative_change_written_as_a_decrease() -> None:
    q = _q("number", "-2.5", tolerance=0.1)
    assert score(q, "-2.5 kg")
    assert score(q, "It decreased by 2.5 kg")
    assert not score(q, "It increased by 2.5 kg")


def test_names_and_condition_names() -> None:
    name = _q("name", "Dr. Chen03 Wu03")
    assert score(name, "Chen Wu prescribed it")
    assert score(name, "Dr. Chen03 Wu03 [MedicationRequest/x]")
    assert not score(name, "Dr. Chen Li")
    text = _q("text", "Viral sinusitis")
    assert score(text, "It was for viral sinusitis (disorder).")
    assert not score(text, "sinusitis")


def test_accuracy_is_the_mean_over_categories() -> None:
    results = [
        {"category": "condition_existence", "correct": True},
        {"category": "condition_existence", "correct": True},
        {"category": "condition_existence", "correct": True},
        {"category": "observation_value", "correct": False},
    ]
    summary = summarize(results)
    assert summary["mean_category_accuracy"] == pytest.approx(0.5)
    assert summary["overall_accuracy"] == pytest.approx(0.75)
    assert summary["categories_covered"] == 2
    assert summarize([])["mean_category_accuracy"] is None
