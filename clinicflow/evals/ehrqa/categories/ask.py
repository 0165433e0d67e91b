"""The skeleton every category builder fills: questions of one category about one subject.

A subject's evidence (gold resources, gold calls) and parameters are set once with `about`; each
question then names only its type, wording and answer. Builders also share the year and day samplers.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from clinicflow.evals.ehrqa.categories.base import Context, day
from clinicflow.evals.ehrqa.facts import Concept
from clinicflow.evals.ehrqa.questions import AnswerKind, Category, GoldCall, Question

__all__ = ["Ask", "DatedGroup", "DayPick", "day_picks", "kept", "years_to_ask"]


def kept(questions: Iterable[Question | None]) -> list[Question]:
    """The questions that were built (a builder returns None when the evidence would not show)."""
    return [q for q in questions if q is not None]


@dataclass(frozen=True)
class Ask:
    """Questions of one category about one subject, sharing its evidence and parameters."""

    ctx: Context
    category: Category
    gold_ids: Sequence[str] = ()
    calls: Sequence[GoldCall] = ()
    params: Mapping[str, Any] = field(default_factory=dict)

    def about(self, gold_ids: Sequence[str], calls: Sequence[GoldCall], params: Mapping[str, Any]) -> Ask:
        """The same category about another subject."""
        return replace(self, gold_ids=gold_ids, calls=calls, params=params)

    def plus(self, **params: Any) -> Ask:
        """The same subject with more parameters."""
        return replace(self, params={**self.params, **params})

    def _fields(self, qtype: str, stem: str, extra: Mapping[str, Any]) -> dict[str, Any]:
        shared = {"category": self.category, "gold_ids": self.gold_ids, "calls": self.calls}
        return {**shared, "params": self.params, "qtype": qtype, "stem": stem, **extra}

    def value(self, qtype: str, kind: AnswerKind, stem: str, answer: str, **extra: Any) -> Question | None:
        """A short-answer question (date, number, integer, name, text)."""
        return self.ctx.make(kind=kind, answer=answer, **self._fields(qtype, stem, extra))

    def yes_no(self, qtype: str, stem: str, answer: bool, **extra: Any) -> Question | None:
        """A yes/no question."""
        return self.ctx.yes_no(answer=answer, **self._fields(qtype, stem, extra))

    def absent(
        self, qtype: str, stem: str, calls: Sequence[GoldCall], params: Mapping[str, Any]
    ) -> Question | None:
        """A "no" about something the record lacks: its calls find nothing, and a refusal is fine."""
        return self.about([], calls, params).yes_no(qtype, stem, False, refusal_ok=True)

    def choice(
        self, rng: random.Random, qtype: str, stem: str, correct: str, wrong: Sequence[str], **extra: Any
    ) -> Question | None:
        """A multiple-choice question (see `Context.choice`)."""
        return self.ctx.choice(rng, correct=correct, wrong=wrong, **self._fields(qtype, stem, extra))


def years_to_ask(rng: random.Random, days: Sequence[dt.date], until: dt.date, each: int) -> list[int]:
    """Up to `each` years with an event and `each` years from the first event to `until` without one."""
    with_event = sorted({d.year for d in days})
    without = [y for y in range(days[0].year, until.year + 1) if y not in with_event]
    return rng.sample(with_event, min(each, len(with_event))) + rng.sample(without, min(each, len(without)))


class DatedGroup(Protocol):
    """A group of dated events of one code, as the day pickers see it."""

    @property
    def concept(self) -> Concept: ...

    @property
    def name(self) -> str: ...

    def days(self) -> list[dt.date]: ...

    def refs_on(self, when: dt.date) -> list[str]: ...


@dataclass(frozen=True)
class DayPick:
    """A "which of these was given on day D" question type: its type (which also seeds its choices), the
    resource searched by day, its wording ("{day}" marks the day) and how many days of a record it asks."""

    qtype: str
    resource_type: str
    stem: str
    most: int


def day_picks(
    ask: Ask, pick: DayPick, groups: Sequence[DatedGroup], absent: Sequence[str]
) -> list[Question | None]:
    """Multiple-choice questions on days of the record; wrong options are two groups not given that day
    and up to three names the record lacks."""
    rng = ask.ctx.rng(pick.qtype)
    all_days = sorted({d for g in groups for d in g.days()})
    out: list[Question | None] = []
    for when in rng.sample(all_days, min(pick.most, len(all_days))):
        correct = rng.choice([g for g in groups if when in g.days()])
        not_given = [g.name for g in groups if when not in g.days()]
        rng.shuffle(not_given)
        wrong = not_given[:2] + rng.sample(list(absent), min(3, len(absent)))
        call = GoldCall(resource_type=pick.resource_type, date_from=day(when), date_to=day(when))
        params = {"code": correct.concept.code, "day": day(when)}
        subject = ask.about(correct.refs_on(when), [call], params)
        out.append(subject.choice(rng, pick.qtype, pick.stem.format(day=day(when)), correct.name, wrong))
    return out
