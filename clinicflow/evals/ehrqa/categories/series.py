"""Measurements grouped by observation code (a series), and the number question every value asks.

A day with two different values of the same observation is never asked about.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from clinicflow.evals.ehrqa.categories.ask import Ask
from clinicflow.evals.ehrqa.categories.base import Context, fmt_number, search_code, tolerance_of
from clinicflow.evals.ehrqa.categories.groups import FactGroup, dated_call
from clinicflow.evals.ehrqa.facts import Concept, Measurement, norm_text
from clinicflow.evals.ehrqa.questions import GoldCall, Question

__all__ = ["Series", "measurement_series", "number_question"]


@dataclass
class Series(FactGroup[Measurement]):
    """All measurements of one observation code, numeric (one unit) or coded; `code` is the code a
    search finds them by."""

    code: str

    def day_of(self, fact: Measurement) -> dt.date | None:
        return fact.day

    @property
    def numeric(self) -> bool:
        return self.facts[0].value is not None

    @property
    def unit(self) -> str:
        return self.facts[0].unit

    def single(self, when: dt.date) -> Measurement | None:
        """The measurement of that day when the day has one value (repeats of the same value allowed)."""
        found = self.on(when)
        if not found:
            return None
        values = {self.shown(m) for m in found}
        return found[0] if len(values) == 1 else None

    def shown(self, m: Measurement) -> str:
        if m.value is not None:
            return fmt_number(m.value)
        return m.coded.name if m.coded is not None else ""

    def with_unit(self, m: Measurement) -> str:
        return f"{self.shown(m)} {self.unit}".strip()

    def call(self, start: dt.date | None = None, end: dt.date | None = None) -> GoldCall:
        return dated_call(
            "Observation", search_code(Concept(self.concept.system, self.code, None)), start, end
        )


def measurement_series(ctx: Context) -> list[Series]:
    """Measurements grouped by code: named, untainted, one kind of value, one unit, one search code."""
    by_code: dict[str, list[Measurement]] = {}
    name_codes: dict[str, set[str]] = {}
    for m in ctx.facts.measurements:
        by_code.setdefault(m.concept.code, []).append(m)
        if m.concept.display:
            name_codes.setdefault(norm_text(m.concept.name), set()).add(m.concept.code)
    out = []
    for code, items in by_code.items():
        concept = items[0].concept
        if not concept.display or ctx.facts.is_tainted("observation", code):
            continue
        if len(name_codes.get(norm_text(concept.name), set())) > 1:
            continue
        if len({m.value is not None for m in items}) != 1 or len({m.unit for m in items}) != 1:
            continue
        if len({m.search_code for m in items}) != 1:
            continue
        if items[0].value is None and any(m.coded is None or not m.coded.display for m in items):
            continue
        out.append(Series(concept, items, items[0].search_code))
    return sorted(out, key=lambda s: (s.name.casefold(), s.concept.code))


def number_question(subject: Ask, qtype: str, stem: str, series: Series, m: Measurement) -> Question | None:
    """The value of one measurement, within half a unit of its last decimal shown."""
    shown = series.shown(m)
    return subject.value(
        qtype,
        "number",
        stem,
        shown,
        answer_text=series.with_unit(m),
        tolerance=tolerance_of(shown),
        unit=series.unit,
    )
