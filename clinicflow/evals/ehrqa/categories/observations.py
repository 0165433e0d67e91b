"""Observation value questions: latest, on a day, closest to a day, extremes in a year, change, coded
values (questions on values that depend on another fact live in `dependent`; series in `series`).

A day with two different values of the same observation is never asked about.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Sequence

from clinicflow.evals.ehrqa.categories.ask import Ask, kept
from clinicflow.evals.ehrqa.categories.base import Context, day, fmt_number, tolerance_of
from clinicflow.evals.ehrqa.categories.dependent import observation_dependent
from clinicflow.evals.ehrqa.categories.series import Series, measurement_series, number_question
from clinicflow.evals.ehrqa.facts import norm_text
from clinicflow.evals.ehrqa.questions import Question

__all__ = ["Series", "measurement_series", "observation_dependent", "observation_value"]

_DAYS_PER_SERIES = 3
_MIN_GAP = 6


def observation_value(ctx: Context) -> list[Question]:
    """Latest value, value on a day, closest to a day, highest/lowest in a year, change, coded values."""
    ask = Ask(ctx, "observation_value")
    out: list[Question | None] = []
    for s in measurement_series(ctx):
        if not s.dated:
            continue
        rng = ctx.rng(f"obs|{s.concept.code}")
        single_days = [d for d in s.days() if s.single(d) is not None]
        series = ask.about([], [], {"code": s.concept.code})
        if not s.numeric:
            out += _coded(series, s, single_days, rng)
            continue
        out += _latest(series, s)
        for when in rng.sample(single_days, min(_DAYS_PER_SERIES, len(single_days))):
            out += _on_day(series, s, when, rng)
        out += [_closest(series, s, rng), _extreme(series, s, rng), _change(series, s, single_days, rng)]
    return kept(out)


def _latest(series: Ask, s: Series) -> list[Question | None]:
    ctx = series.ctx
    until = [d for d in s.days() if d <= ctx.ref]
    if not until or (latest := s.single(until[-1])) is None:
        return []
    subject = series.about(s.refs_on(until[-1]), [s.call(end=ctx.ref)], series.params).plus(ref=ctx.ref_s)
    stem = f"What was the patient's most recent {s.name} as of {ctx.ref_s}?"
    return [number_question(subject, "obs_latest", stem, s, latest)]


def _on_day(series: Ask, s: Series, when: dt.date, rng: random.Random) -> list[Question | None]:
    """The value on a day, as a number and as a choice among the series' other values."""
    m = s.single(when)
    assert m is not None
    subject = series.about(s.refs_on(when), [s.call(when, when)], series.params).plus(day=day(when))
    stem = f"What was the patient's {s.name} on {day(when)}?"
    out = [number_question(subject, "obs_on_date", stem, s, m)]
    wrong = sorted(
        {
            s.with_unit(x)
            for x in s.facts
            if abs((x.value or 0) - (m.value or 0)) > 2 * tolerance_of(s.shown(m))
        }
    )
    out.append(subject.choice(rng, "obs_pick", stem, s.with_unit(m), rng.sample(wrong, min(3, len(wrong)))))
    return out


def _closest(series: Ask, s: Series, rng: random.Random) -> Question | None:
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
    calls = [s.call(target - reach, target + reach)]
    subject = series.about(s.refs_on(nearest), calls, series.params).plus(target=day(target))
    stem = f"What was the patient's {s.name} measured closest in time to {day(target)}?"
    return number_question(subject, "obs_closest", stem, s, m)


def _extreme(series: Ask, s: Series, rng: random.Random) -> Question | None:
    years = sorted({d.year for d in s.days() if sum(1 for x in s.days() if x.year == d.year) >= 2})
    if not years:
        return None
    year = rng.choice(years)
    highest = rng.random() < 0.5
    in_year = [m for m in s.facts if m.day is not None and m.day.year == year and m.value is not None]
    pick = max if highest else min
    best = pick(in_year, key=lambda m: m.value or 0.0)
    refs = [m.ref for m in in_year if s.shown(m) == s.shown(best)]
    word = "highest" if highest else "lowest"
    calls = [s.call(dt.date(year, 1, 1), dt.date(year, 12, 31))]
    subject = series.about(refs, calls, series.params).plus(year=year, highest=highest)
    stem = f"What was the patient's {word} {s.name} recorded in {year}?"
    return number_question(subject, "obs_extreme_year", stem, s, best)


def _change(series: Ask, s: Series, single_days: Sequence[dt.date], rng: random.Random) -> Question | None:
    if len(single_days) < 2:
        return None
    first, second = sorted(rng.sample(list(single_days), 2))
    m1, m2 = s.single(first), s.single(second)
    assert m1 is not None and m2 is not None and m1.value is not None and m2.value is not None
    diff = round(m2.value, 2) - round(m1.value, 2)
    shown = fmt_number(diff)
    unit = f" {s.unit}" if s.unit else ""
    gold = [*s.refs_on(first), *s.refs_on(second)]
    calls = [s.call(first, first), s.call(second, second)]
    subject = series.about(gold, calls, series.params).plus(day_a=day(first), day_b=day(second))
    stem = (
        f"By how much did the patient's {s.name} change from {day(first)} to {day(second)} "
        f"(later value minus earlier value; negative for a decrease)?"
    )
    tolerance = tolerance_of(s.shown(m1)) + tolerance_of(s.shown(m2))
    return subject.value(
        "obs_change", "number", stem, shown, answer_text=f"{shown}{unit}", tolerance=tolerance, unit=s.unit
    )


def _coded(
    series: Ask, s: Series, single_days: Sequence[dt.date], rng: random.Random
) -> list[Question | None]:
    values = {
        norm_text(c.name): c.name
        for c in [
            *series.ctx.corpus.coded_values.get(s.concept.code, []),
            *(m.coded for m in s.facts if m.coded),
        ]
        if c.display
    }
    out: list[Question | None] = []
    for when in rng.sample(list(single_days), min(2, len(single_days))):
        m = s.single(when)
        assert m is not None
        correct = s.shown(m)
        wrong = sorted(v for k, v in values.items() if k != norm_text(correct))
        subject = series.about(s.refs_on(when), [s.call(when, when)], series.params).plus(day=day(when))
        stem = f"What was the patient's {s.name} on {day(when)}?"
        out.append(subject.choice(rng, "obs_coded", stem, correct, rng.sample(wrong, min(3, len(wrong)))))
    return out
