"""What every category's group of facts shares: the facts of one code and the day each happened on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from clinicflow.evals.ehrqa.categories.base import day
from clinicflow.evals.ehrqa.facts import Concept
from clinicflow.evals.ehrqa.questions import GoldCall

__all__ = ["FactGroup", "dated_call"]


class _Fact(Protocol):
    @property
    def ref(self) -> str: ...


FactT = TypeVar("FactT", bound=_Fact)


@dataclass
class FactGroup(Generic[FactT]):
    """The facts of one code; `day_of` says which day a fact happened on (None when undated)."""

    concept: Concept
    facts: list[FactT]

    def day_of(self, fact: FactT) -> dt.date | None:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.concept.name

    @property
    def refs(self) -> list[str]:
        return [f.ref for f in self.facts]

    @property
    def dated(self) -> bool:
        return all(self.day_of(f) is not None for f in self.facts)

    def days(self) -> list[dt.date]:
        return sorted({d for f in self.facts if (d := self.day_of(f)) is not None})

    def on(self, when: dt.date) -> list[FactT]:
        return [f for f in self.facts if self.day_of(f) == when]

    def refs_on(self, when: dt.date) -> list[str]:
        return list(dict.fromkeys(f.ref for f in self.on(when)))


def dated_call(resource_type: str, code: str, start: dt.date | None, end: dt.date | None) -> GoldCall:
    """A search by code, limited to the days from `start` to `end` where given."""
    return GoldCall(
        resource_type=resource_type,
        code=code,
        date_from=day(start) if start else None,
        date_to=day(end) if end else None,
    )
