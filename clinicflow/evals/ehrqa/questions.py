"""The question format: categories, answer forms, gold answers, gold resource ids and gold tool calls."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CATEGORIES",
    "CATEGORY_TITLES",
    "AnswerForm",
    "AnswerKind",
    "Category",
    "GoldCall",
    "Question",
    "Split",
    "read_questions",
    "write_questions",
]

Category = Literal[
    "condition_existence",
    "condition_existence_transitive",
    "immunization_date",
    "medication_current",
    "medication_existence",
    "medication_prescriber",
    "medication_prescription_date",
    "medication_for_condition",
    "observation_value",
    "observation_dependent",
]
CATEGORIES: tuple[Category, ...] = get_args(Category)
CATEGORY_TITLES: dict[str, str] = {
    "condition_existence": "Condition existence",
    "condition_existence_transitive": "Condition existence (transitive)",
    "immunization_date": "Immunization date",
    "medication_current": "Medication current",
    "medication_existence": "Medication existence",
    "medication_prescriber": "Medication prescriber",
    "medication_prescription_date": "Medication prescription date",
    "medication_for_condition": "Medication for condition",
    "observation_value": "Observation value",
    "observation_dependent": "Observation (dependent)",
}
"""The report's ten EHRQA categories, in the order reports list them."""

AnswerForm = Literal["multiple_choice", "yes_no", "short_answer"]
AnswerKind = Literal["yes_no", "choice", "date", "number", "integer", "text", "name"]
Split = Literal["train", "val", "test"]


class GoldCall(BaseModel):
    """Arguments of `search_record` that retrieve the evidence, or (expect_absent) show it is absent."""

    model_config = ConfigDict(frozen=True)

    resource_type: str
    code: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    expect_absent: bool = False

    def tool_args(self) -> dict[str, Any]:
        """The call's arguments as the tool takes them (unset ones left out)."""
        args = self.model_dump(exclude={"expect_absent"}, exclude_none=True)
        return args


class Question(BaseModel):
    """One generated question about one patient, with its gold answer and the evidence it rests on.

    `answer` is what a perfect reply says (an option letter for multiple choice); `answer_text` spells it
    out. `gold_ids` are the `Type/id` citations the tool output must contain; `support_ids` are resources
    the answer also rests on that tools show only inside another line (a prescriber, an encounter).
    `refusal_ok` marks questions whose answer is "no" because the record lacks something, where
    "not found in the record" is also correct. `params` are the inputs the answer was computed from.
    """

    id: str
    patient_id: str
    category: Category
    qtype: str
    form: AnswerForm
    kind: AnswerKind
    text: str
    options: list[str] = Field(default_factory=list)
    answer: str
    answer_text: str
    tolerance: float | None = None
    refusal_ok: bool = False
    gold_ids: list[str] = Field(default_factory=list)
    support_ids: list[str] = Field(default_factory=list)
    gold_calls: list[GoldCall] = Field(default_factory=list)
    reference_date: str
    split: Split = "test"
    params: dict[str, Any] = Field(default_factory=dict)


def write_questions(questions: Iterable[Question], path: Path) -> Path:
    """Write questions as JSON lines (one question per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for q in questions:
            fh.write(q.model_dump_json() + "\n")
    return path


def read_questions(path: Path) -> list[Question]:
    """Read questions written by `write_questions`."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(Question.model_validate(json.loads(line)))
    return out
