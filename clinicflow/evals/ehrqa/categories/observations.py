"""Observation questions: values (latest, on a day, closest to a day, extremes, change, coded values) and
values that depend on another fact (the day a condition began, a drug was first prescribed, a vaccine given).

A day with two different values of the same observation is never asked about.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from clinicflow.evals.ehrqa.categories.base import Context, day, fmt_number, search_code, tolerance_of
from clinicflow.evals.ehrqa.categories.conditions import condition_groups
from clinicflow.evals.ehrqa.categories.immunizations import vaccine_groups
from clinicflow.evals.ehrqa.categories.medications import medication_groups
from clinicflow.evals.ehrqa.facts import Concept, Measurement, norm_text
from clinicflow.evals.ehrqa.questions import Category, GoldCall, Question

__all__ = ["Series", "measurement_series", "observation_dependent", "observation_value"]

_DAYS_PER_SERIES = 3
_MAX_DEPENDENT = 25
_MIN_GAP = 6


@dataclass
class Series:
    """All measurements of one observation code, numeric (one unit) or coded."""

    concept: Concept
    items: list[Measurement]
    code: str

    @property
    def name(self) -> str:
        return self.concept.name

    @property
    def numeric(self) -> bool:
        return self.items[0].value is not None

    @property
    def unit(self) -> str:
        return self.items[0].unit

    @property
    def dated(self) -> bool:
        return all(m.day is not None for m in self.items)

    def days(self) -> list[dt.date]:
        return sorted({m.day for m in self.items if m.day is not None})

    def on(self, when: dt.date) -> list[Measurement]:
        return [m for m in self.items if m.day == when]

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

    def refs_on(self, when: dt.date) -> list[str]:
        return list(dict.fromkeys(m.ref for m in self.on(when)))

    def call(self, start: dt.date | None = None, end: dt.date | None = None) -> GoldCall:
        code = search_code(Concept(self.concept.system, self.code, None))
        return GoldCall(
            resource_type="Observation",
            code=code,
            date_from=day(start) if start else None,
            date_to=day(end) if end else None,
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


def _number_question(ctx: Context, series: Series, m: Measurement, **kwargs: object) -> Question | None:
    shown = series.shown(m)
    return ctx.make(
        kind="number",
        answer=shown,
        answer_text=series.with_unit(m),
        tolerance=tolerance_of(shown),
        unit=series.unit,
        **kwargs,  # type: ignore[arg-type]
    )


def observation_value(ctx: Context) -> list[Question]:
    """Latest value, value on a day, closest to a day, highest/lowest in a year, change, coded values."""
    cat: Category = "observation_value"
    out: list[Question | None] = []
    for s in measurement_series(ctx):
        if not s.dated:
            continue
        rng = ctx.rng(f"obs|{s.concept.code}")
        days = s.days()
        single_days = [d for d in days if s.single(d) is not None]
        params = {"code": s.concept.code}
        if not s.numeric:
            out += _coded(ctx, s, single_days, rng)
            continue
        until = [d for d in days if d <= ctx.ref]
        if until and (latest := s.single(until[-1])) is not None:
            out.append(
                _number_question(
                    ctx,
                    s,
                    latest,
                    category=cat,
                    qtype="obs_latest",
                    stem=f"What was the patient's most recent {s.name} as of {ctx.ref_s}?",
                    gold_ids=s.refs_on(until[-1]),
                    calls=[s.call(end=ctx.ref)],
                    params={**params, "ref": ctx.ref_s},
                )
            )
        for when in rng.sample(single_days, min(_DAYS_PER_SERIES, len(single_days))):
            m = s.single(when)
            assert m is not None
            out.append(
                _number_question(
                    ctx,
                    s,
                    m,
                    category=cat,
                    qtype="obs_on_date",
                    stem=f"What was the patient's {s.name} on {day(when)}?",
                    gold_ids=s.refs_on(when),
                    calls=[s.call(when, when)],
                    params={**params, "day": day(when)},
                )
            )
            wrong = sorted(
                {
                    s.with_unit(x)
                    for x in s.items
                    if abs((x.value or 0) - (m.value or 0)) > 2 * tolerance_of(s.shown(m))
                }
            )
            out.append(
                ctx.choice(
                    rng,
                    correct=s.with_unit(m),
                    wrong=rng.sample(wrong, min(3, len(wrong))),
                    category=cat,
                    qtype="obs_pick",
                    stem=f"What was the patient's {s.name} on {day(when)}?",
                    gold_ids=s.refs_on(when),
                    calls=[s.call(when, when)],
                    params={**params, "day": day(when)},
                )
            )
        out.append(_closest(ctx, s, rng))
        out.append(_extreme(ctx, s, rng))
        out.append(_change(ctx, s, single_days, rng))
    return [q for q in out if q is not None]


def _closest(ctx: Context, s: Series, rng: random.Random) -> Question | None:
    days = s.days()
    gaps = [(a, b) for a, b in itertools.pairwise(days) if (b - a).days >= _MIN_GAP]
    if not gaps:
        return None
    a, b = rng.choice(gaps)
    gap = (b - a).days
    offset = rng.choice([k for k in range(1, gap) if abs(k - (gap - k)) >= 2])
    target = a + dt.timedelta(days=offset)
    nearest = a if offset < gap - offset else b
    m = s.single(nearest)
    if m is None:
        return None
    reach = dt.timedelta(days=max(offset, gap - offset))
    return _number_question(
        ctx,
        s,
        m,
        category="observation_value",
        qtype="obs_closest",
        stem=f"What was the patient's {s.name} measured closest in time to {day(target)}?",
        gold_ids=s.refs_on(nearest),
        calls=[s.call(target - reach, target + reach)],
        params={"code": s.concept.code, "target": day(target)},
    )


def _extreme(ctx: Context, s: Series, rng: random.Random) -> Question | None:
    years = sorted({d.year for d in s.days() if sum(1 for x in s.days() if x.year == d.year) >= 2})
    if not years:
        return None
    year = rng.choice(years)
    highest = rng.random() < 0.5
    in_year = [m for m in s.items if m.day is not None and m.day.year == year and m.value is not None]
    pick = max if highest else min
    best = pick(in_year, key=lambda m: m.value or 0.0)
    refs = [m.ref for m in in_year if s.shown(m) == s.shown(best)]
    word = "highest" if highest else "lowest"
    return _number_question(
        ctx,
        s,
        best,
        category="observation_value",
        qtype="obs_extreme_year",
        stem=f"What was the patient's {word} {s.name} recorded in {year}?",
        gold_ids=refs,
        calls=[s.call(dt.date(year, 1, 1), dt.date(year, 12, 31))],
        params={"code": s.concept.code, "year": year, "highest": highest},
    )


def _change(ctx: Context, s: Series, single_days: Sequence[dt.date], rng: random.Random) -> Question | None:
    if len(single_days) < 2:
        return None
    first, second = sorted(rng.sample(list(single_days), 2))
    m1, m2 = s.single(first), s.single(second)
    assert m1 is not None and m2 is not None and m1.value is not None and m2.value is not None
    diff = round(m2.value, 2) - round(m1.value, 2)
    shown = fmt_number(diff)
    unit = f" {s.unit}" if s.unit else ""
    return ctx.make(
        category="observation_value",
        qtype="obs_change",
        kind="number",
        stem=(
            f"By how much did the patient's {s.name} change from {day(first)} to {day(second)} "
            f"(later value minus earlier value; negative for a decrease)?"
        ),
        answer=shown,
        answer_text=f"{shown}{unit}",
        tolerance=tolerance_of(s.shown(m1)) + tolerance_of(s.shown(m2)),
        unit=s.unit,
        gold_ids=[*s.refs_on(first), *s.refs_on(second)],
        calls=[s.call(first, first), s.call(second, second)],
        params={"code": s.concept.code, "day_a": day(first), "day_b": day(second)},
    )


def _coded(
    ctx: Context, s: Series, single_days: Sequence[dt.date], rng: random.Random
) -> list[Question | None]:
    values = {
        norm_text(c.name): c.name
        for c in [*ctx.corpus.coded_values.get(s.concept.code, []), *(m.coded for m in s.items if m.coded)]
        if c.display
    }
    out: list[Question | None] = []
    for when in rng.sample(list(single_days), min(2, len(single_days))):
        m = s.single(when)
        assert m is not None
        correct = s.shown(m)
        wrong = sorted(v for k, v in values.items() if k != norm_text(correct))
        out.append(
            ctx.choice(
                rng,
                correct=correct,
                wrong=rng.sample(wrong, min(3, len(wrong))),
                category="observation_value",
                qtype="obs_coded",
                stem=f"What was the patient's {s.name} on {day(when)}?",
                gold_ids=s.refs_on(when),
                calls=[s.call(when, when)],
                params={"code": s.concept.code, "day": day(when)},
            )
        )
    return out


def observation_dependent(ctx: Context) -> list[Question]:
    """A value on the day of another fact, above a threshold then, or on the day another value peaked."""
    cat: Category = "observation_dependent"
    numeric = [s for s in measurement_series(ctx) if s.numeric and s.dated]
    out: list[Question | None] = []

    rng = ctx.rng("dep_at_condition")
    at_condition = [
        (g, s, m)
        for g in condition_groups(ctx)
        if g.dated
        for s in numeric
        if (m := s.single(g.first)) is not None
    ]
    rng.shuffle(at_condition)
    for g, s, m in at_condition[:_MAX_DEPENDENT]:
        base = {
            "category": cat,
            "gold_ids": [*g.first_refs, *s.refs_on(g.first)],
            "calls": [g.call(), s.call(g.first, g.first)],
        }
        params = {"condition": g.concept.code, "code": s.concept.code}
        out.append(
            _number_question(
                ctx,
                s,
                m,
                qtype="dep_at_condition",
                stem=f"What was the patient's {s.name} on the day '{g.name}' was first recorded "
                "(its onset date)?",
                params=params,
                **base,
            )
        )
        assert m.value is not None
        shown = float(s.shown(m))
        tol = tolerance_of(s.shown(m))
        step = rng.uniform(0.05, 0.25) * (abs(shown) or 1.0)
        threshold = fmt_number(shown + step if rng.random() < 0.5 else shown - step)
        if abs(float(threshold) - shown) <= 2 * tol:
            continue
        unit = f" {s.unit}" if s.unit else ""
        out.append(
            ctx.yes_no(
                answer=shown > float(threshold),
                qtype="dep_above_at_condition",
                stem=f"Was the patient's {s.name} above {threshold}{unit} on the day '{g.name}' was first "
                f"recorded (its onset date)?",
                params={**params, "threshold": threshold},
                **base,
            )
        )

    rng = ctx.rng("dep_before_med")
    before_med = []
    for mg in medication_groups(ctx):
        calls = mg.calls()
        if not mg.dated or calls is None:
            continue
        first = mg.days()[0]
        for s in numeric:
            earlier = [d for d in s.days() if d <= first]
            if earlier and (m := s.single(earlier[-1])) is not None:
                before_med.append((mg, calls, first, s, earlier[-1], m))
    rng.shuffle(before_med)
    for mg, calls, first, s, when, m in before_med[:_MAX_DEPENDENT]:
        out.append(
            _number_question(
                ctx,
                s,
                m,
                category=cat,
                qtype="dep_before_med",
                stem=f"What was the patient's most recent {s.name} on or before the day {mg.name} was first "
                f"prescribed?",
                gold_ids=[*(f.ref for f in mg.on(first)), *s.refs_on(when)],
                calls=[*calls, s.call(end=first)],
                params={"medication": mg.concept.code, "code": s.concept.code},
            )
        )

    rng = ctx.rng("dep_at_vaccine")
    at_vaccine = [
        (v, s, m)
        for v in vaccine_groups(ctx)
        if v.dated
        for s in numeric
        if (m := s.single(v.days()[0])) is not None
    ]
    rng.shuffle(at_vaccine)
    for v, s, m in at_vaccine[:_MAX_DEPENDENT]:
        first = v.days()[0]
        out.append(
            _number_question(
                ctx,
                s,
                m,
                category=cat,
                qtype="dep_at_vaccine",
                stem=f"What was the patient's {s.name} on the day they first received the {v.name} vaccine?",
                gold_ids=[*v.refs_on(first), *s.refs_on(first)],
                calls=[v.call(), s.call(first, first)],
                params={"vaccine": v.concept.code, "code": s.concept.code},
            )
        )

    out += _at_peak(ctx, numeric)
    return [q for q in out if q is not None]


def _at_peak(ctx: Context, numeric: Sequence[Series]) -> list[Question | None]:
    """A value on the day in year Y when another value was at its highest that year."""
    rng = ctx.rng("dep_at_peak")
    found = []
    for b in numeric:
        for year in sorted({d.year for d in b.days()}):
            in_year = [m for m in b.items if m.day is not None and m.day.year == year and m.value is not None]
            if len(in_year) < 2:
                continue
            top = max(m.value or 0.0 for m in in_year)
            peaks = {m.day for m in in_year if fmt_number(m.value or 0.0) == fmt_number(top)}
            if len(peaks) != 1:
                continue
            peak = next(iter(peaks))
            assert peak is not None
            call = b.call(dt.date(year, 1, 1), dt.date(year, 12, 31))
            if not {r.key for r in ctx.view.matches(call)} <= ctx.view.shown(call):
                continue
            for a in numeric:
                if a is not b and (m := a.single(peak)) is not None:
                    found.append((b, year, peak, call, a, m))
    rng.shuffle(found)
    out: list[Question | None] = []
    for b, year, peak, call, a, m in found[:_MAX_DEPENDENT]:
        out.append(
            _number_question(
                ctx,
                a,
                m,
                category="observation_dependent",
                qtype="dep_at_peak",
                stem=f"What was the patient's {a.name} on the day in {year} when their {b.name} was at its "
                f"highest that year?",
                gold_ids=[*b.refs_on(peak), *a.refs_on(peak)],
                calls=[call, a.call(peak, peak)],
                params={"peak_code": b.concept.code, "year": year, "code": a.concept.code},
            )
        )
    return out
