"""Drawing training examples: at most so many per role and category, optionally spread over question types."""

from __future__ import annotations

from collections import Counter

from clinicflow.evals.training_data import _sample


def _examples() -> list[dict]:
    # 9 of one question type and 1 of another, in one role and category.
    kinds = ["obs_on_date"] * 9 + ["obs_latest"]
    return [
        {"id": i, "metadata": {"role": "planner", "category": "observation_value", "qtype": q}}
        for i, q in enumerate(kinds)
    ]


def test_at_most_per_group_examples_are_drawn_and_the_draw_is_seeded() -> None:
    drawn = _sample(_examples(), 4, seed=1)
    assert len(drawn) == 4
    assert [e["id"] for e in drawn] == [e["id"] for e in _sample(_examples(), 4, seed=1)]


def test_spread_takes_every_question_type_before_a_second_of_any() -> None:
    for seed in range(20):
        drawn = _sample(_examples(), 2, seed=seed, spread=True)
        assert Counter(e["metadata"]["qtype"] for e in drawn) == {"obs_on_date": 1, "obs_latest": 1}
