"""Immunization questions: last and first dose, dose counts, days between doses, doses by year and day."""

from __future__ import annotations

import datetime as dt

from clinicflow.evals.ehrqa.categories.ask import Ask, DayPick, day_picks, kept, years_to_ask
from clinicflow.evals.ehrqa.categories.base import Context, day, search_code
from clinicflow.evals.ehrqa.categories.groups import FactGroup, dated_call
from clinicflow.evals.ehrqa.facts import ImmunizationFact
from clinicflow.evals.ehrqa.questions import GoldCall, Question
from clinicflow.evals.ehrqa.terminology import distractor_concepts

__all__ = ["VaxGroup", "immunization_date", "vaccine_groups"]

_MAX_YEARS = 4
_BY_DAY = DayPick(
    "imm_on_date_pick", "Immunization", "Which of these vaccines did the patient receive on {day}?", most=8
)


class VaxGroup(FactGroup[ImmunizationFact]):
    """All completed doses of one vaccine code, each on the day given."""

    def day_of(self, fact: ImmunizationFact) -> dt.date | None:
        return fact.day

    def call(self, start: dt.date | None = None, end: dt.date | None = None) -> GoldCall:
        return dated_call("Immunization", search_code(self.concept), start, end)


def vaccine_groups(ctx: Context) -> list[VaxGroup]:
    """Doses grouped by vaccine code: codes with a display no other code shares, none tainted."""
    return ctx.code_groups("vaccine", ctx.facts.immunizations, VaxGroup)


def immunization_date(ctx: Context) -> list[Question]:
    """Most recent and first dose, doses by the reference day, days between doses, by year, by day."""
    ask = Ask(ctx, "immunization_date")
    groups = vaccine_groups(ctx)
    out: list[Question | None] = []
    for g in groups:
        if g.dated:
            subject = ask.about([], [g.call()], {"code": g.concept.code})
            out += [*_doses(subject, g), *_in_years(subject, g)]
    out += _by_day(ask, groups)
    return kept(out)


def _doses(subject: Ask, g: VaxGroup) -> list[Question | None]:
    """Last and first dose, doses by the reference day, days between the first two doses."""
    ctx = subject.ctx
    days = g.days()
    last, first = days[-1], days[0]
    stem = f"On what date did the patient most recently receive the {g.name} vaccine?"
    out = [subject.value("imm_last_date", "date", stem, day(last), gold_ids=g.refs_on(last))]
    given = [f.ref for f in g.facts if f.day is not None and f.day <= ctx.ref]
    stem = f"How many doses of the {g.name} vaccine had the patient received by {ctx.ref_s}?"
    by_ref = subject.plus(ref=ctx.ref_s)
    out.append(
        by_ref.value("imm_count", "integer", stem, str(len(given)), gold_ids=given, refusal_ok=not given)
    )
    if len(days) < 2:
        return out
    stem = f"On what date did the patient first receive the {g.name} vaccine?"
    out.append(subject.value("imm_first_date", "date", stem, day(first), gold_ids=g.refs_on(first)))
    if len(g.refs_on(first)) == 1 and len(g.refs_on(days[1])) == 1:
        stem = f"How many days passed between the patient's first and second doses of the {g.name} vaccine?"
        gold = [*g.refs_on(first), *g.refs_on(days[1])]
        out.append(
            subject.value("imm_days_between", "integer", stem, str((days[1] - first).days), gold_ids=gold)
        )
    return out


def _in_years(subject: Ask, g: VaxGroup) -> list[Question | None]:
    """Was a dose given in year Y: years with doses and years without, up to the reference year."""
    rng = subject.ctx.rng(f"imm_in_year|{g.concept.code}")
    out = []
    for year in years_to_ask(rng, g.days(), subject.ctx.ref, 2)[:_MAX_YEARS]:
        start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
        refs = [f.ref for f in g.facts if f.day is not None and f.day.year == year]
        call = g.call(start, end).model_copy(update={"expect_absent": not refs})
        stem = f"Did the patient receive a dose of the {g.name} vaccine in {year}?"
        in_year = subject.about(refs, [call], {**subject.params, "year": year})
        out.append(in_year.yes_no("imm_in_year", stem, bool(refs), refusal_ok=not refs))
    return out


def _by_day(ask: Ask, groups: list[VaxGroup]) -> list[Question | None]:
    """Which vaccine was given on a day: only when every dose in the record is dated and named."""
    ctx = ask.ctx
    if not groups or any(not g.dated for g in groups):
        return []
    if len({f.ref for f in ctx.facts.immunizations}) != sum(len(g.facts) for g in groups):
        return []
    if ctx.facts.tainted.get("vaccine"):
        return []
    pool = [*ctx.corpus.concepts.get("vaccine", []), *distractor_concepts("vaccine")]
    return day_picks(ask, _BY_DAY, groups, [c.name for c in ctx.absent_concepts("vaccine", pool)])
