"""Immunization questions: last and first dose, dose counts, days between doses, doses by year and day."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from clinicflow.evals.ehrqa.categories.base import Context, day, search_code
from clinicflow.evals.ehrqa.facts import Concept, ImmunizationFact
from clinicflow.evals.ehrqa.questions import Category, GoldCall, Question
from clinicflow.evals.ehrqa.terminology import distractor_concepts

__all__ = ["VaxGroup", "immunization_date", "vaccine_groups"]

_MAX_YEARS = 4
_MAX_DAYS = 8


@dataclass
class VaxGroup:
    """All completed doses of one vaccine code."""

    concept: Concept
    facts: list[ImmunizationFact]

    @property
    def name(self) -> str:
        return self.concept.name

    @property
    def dated(self) -> bool:
        return all(f.day is not None for f in self.facts)

    def days(self) -> list[dt.date]:
        return sorted({f.day for f in self.facts if f.day is not None})

    def refs_on(self, when: dt.date) -> list[str]:
        return [f.ref for f in self.facts if f.day == when]

    def call(self, start: dt.date | None = None, end: dt.date | None = None) -> GoldCall:
        return GoldCall(
            resource_type="Immunization",
            code=search_code(self.concept),
            date_from=day(start) if start else None,
            date_to=day(end) if end else None,
        )


def vaccine_groups(ctx: Context) -> list[VaxGroup]:
    """Doses grouped by vaccine code: codes with a display no other code shares, none tainted."""
    return ctx.code_groups("vaccine", ctx.facts.immunizations, VaxGroup)


def immunization_date(ctx: Context) -> list[Question]:
    """Most recent and first dose, doses by the reference day, days between doses, by year, by day."""
    cat: Category = "immunization_date"
    groups = vaccine_groups(ctx)
    out: list[Question | None] = []
    for g in groups:
        if not g.dated:
            continue
        days = g.days()
        last, first = days[-1], days[0]
        params = {"code": g.concept.code}
        out.append(
            ctx.make(
                category=cat,
                qtype="imm_last_date",
                kind="date",
                stem=f"On what date did the patient most recently receive the {g.name} vaccine?",
                answer=day(last),
                gold_ids=g.refs_on(last),
                calls=[g.call()],
                params=params,
            )
        )
        given = [f for f in g.facts if f.day is not None and f.day <= ctx.ref]
        out.append(
            ctx.make(
                category=cat,
                qtype="imm_count",
                kind="integer",
                stem=f"How many doses of the {g.name} vaccine had the patient received by {ctx.ref_s}?",
                answer=str(len(given)),
                gold_ids=[f.ref for f in given],
                calls=[g.call()],
                params={**params, "ref": ctx.ref_s},
                refusal_ok=not given,
            )
        )
        if len(days) >= 2:
            out.append(
                ctx.make(
                    category=cat,
                    qtype="imm_first_date",
                    kind="date",
                    stem=f"On what date did the patient first receive the {g.name} vaccine?",
                    answer=day(first),
                    gold_ids=g.refs_on(first),
                    calls=[g.call()],
                    params=params,
                )
            )
            if len(g.refs_on(first)) == 1 and len(g.refs_on(days[1])) == 1:
                out.append(
                    ctx.make(
                        category=cat,
                        qtype="imm_days_between",
                        kind="integer",
                        stem=(
                            f"How many days passed between the patient's first and second doses of the "
                            f"{g.name} vaccine?"
                        ),
                        answer=str((days[1] - first).days),
                        gold_ids=[*g.refs_on(first), *g.refs_on(days[1])],
                        calls=[g.call()],
                        params=params,
                    )
                )
        rng = ctx.rng(f"imm_in_year|{g.concept.code}")
        with_dose = sorted({d.year for d in days})
        without = [y for y in range(first.year, ctx.ref.year + 1) if y not in with_dose]
        years = rng.sample(with_dose, min(2, len(with_dose))) + rng.sample(without, min(2, len(without)))
        for year in years[:_MAX_YEARS]:
            start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
            refs = [f.ref for f in g.facts if f.day is not None and f.day.year == year]
            out.append(
                ctx.yes_no(
                    answer=bool(refs),
                    category=cat,
                    qtype="imm_in_year",
                    stem=f"Did the patient receive a dose of the {g.name} vaccine in {year}?",
                    gold_ids=refs,
                    calls=[g.call(start, end).model_copy(update={"expect_absent": not refs})],
                    params={**params, "year": year},
                    refusal_ok=not refs,
                )
            )
    out += _by_day(ctx, groups)
    return [q for q in out if q is not None]


def _by_day(ctx: Context, groups: list[VaxGroup]) -> list[Question | None]:
    """Which vaccine was given on a day: only when every dose in the record is dated and named."""
    if not groups or any(not g.dated for g in groups):
        return []
    if len({f.ref for f in ctx.facts.immunizations}) != sum(len(g.facts) for g in groups):
        return []
    if ctx.facts.tainted.get("vaccine"):
        return []
    rng = ctx.rng("imm_on_date_pick")
    all_days = sorted({d for g in groups for d in g.days()})
    pool = [*ctx.corpus.concepts.get("vaccine", []), *distractor_concepts("vaccine")]
    absent = ctx.absent_concepts("vaccine", pool)
    out: list[Question | None] = []
    for when in rng.sample(all_days, min(_MAX_DAYS, len(all_days))):
        given = [g for g in groups if when in g.days()]
        correct = rng.choice(given)
        not_given = [g.name for g in groups if when not in g.days()]
        rng.shuffle(not_given)
        wrong = not_given[:2] + [c.name for c in rng.sample(absent, min(3, len(absent)))]
        out.append(
            ctx.choice(
                rng,
                correct=correct.name,
                wrong=wrong,
                category="immunization_date",
                qtype="imm_on_date_pick",
                stem=f"Which of these vaccines did the patient receive on {day(when)}?",
                gold_ids=correct.refs_on(when),
                calls=[GoldCall(resource_type="Immunization", date_from=day(when), date_to=day(when))],
                params={"code": correct.concept.code, "day": day(when)},
            )
        )
    return out
