"""Observation values that depend on another fact: the value on the day a condition began, before a
drug was first prescribed, on the day a vaccine was given, or on the day another value peaked."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import TypeVar

from clinicflow.evals.ehrqa.categories.ask import Ask, kept
from clinicflow.evals.ehrqa.categories.base import Context, fmt_number, tolerance_of
from clinicflow.evals.ehrqa.categories.conditions import condition_groups
from clinicflow.evals.ehrqa.categories.immunizations import vaccine_groups
from clinicflow.evals.ehrqa.categories.medication_groups import medication_groups
from clinicflow.evals.ehrqa.categories.series import Series, measurement_series, number_question
from clinicflow.evals.ehrqa.facts import Measurement
from clinicflow.evals.ehrqa.questions import Question

__all__ = ["observation_dependent"]

_MAX_DEPENDENT = 25
T = TypeVar("T")


def observation_dependent(ctx: Context) -> list[Question]:
    """A value on the day of another fact, above a threshold then, or on the day another value peaked."""
    ask = Ask(ctx, "observation_dependent")
    numeric = [s for s in measurement_series(ctx) if s.numeric and s.dated]
    return kept(
        [
            *_at_condition(ask, numeric),
            *_before_medication(ask, numeric),
            *_at_vaccine(ask, numeric),
            *_at_peak(ask, numeric),
        ]
    )


def _values_on(
    rng: random.Random, events: Sequence[tuple[T, dt.date]], numeric: Sequence[Series]
) -> list[tuple[T, Series, Measurement]]:
    """Up to `_MAX_DEPENDENT` (event, series, value) triples, shuffled: each series' single value on
    the day of each event."""
    found = [(event, s, m) for event, when in events for s in numeric if (m := s.single(when)) is not None]
    rng.shuffle(found)
    return found[:_MAX_DEPENDENT]


def _at_condition(ask: Ask, numeric: Sequence[Series]) -> list[Question | None]:
    """The value on the day a condition was first recorded, and whether it was above a threshold."""
    rng = ask.ctx.rng("dep_at_condition")
    out = []
    for g, s, m in _values_on(rng, [(g, g.first) for g in condition_groups(ask.ctx) if g.dated], numeric):
        gold = [*g.first_refs, *s.refs_on(g.first)]
        subject = ask.about(
            gold, [g.call(), s.call(g.first, g.first)], {"condition": g.concept.code, "code": s.concept.code}
        )
        stem = f"What was the patient's {s.name} on the day '{g.name}' was first recorded (its onset date)?"
        out.append(number_question(subject, "dep_at_condition", stem, s, m))
        assert m.value is not None
        shown = float(s.shown(m))
        tol = tolerance_of(s.shown(m))
        step = rng.uniform(0.05, 0.25) * (abs(shown) or 1.0)
        threshold = fmt_number(shown + step if rng.random() < 0.5 else shown - step)
        if abs(float(threshold) - shown) <= 2 * tol:
            continue
        unit = f" {s.unit}" if s.unit else ""
        stem = (
            f"Was the patient's {s.name} above {threshold}{unit} on the day '{g.name}' was first "
            f"recorded (its onset date)?"
        )
        above = subject.plus(threshold=threshold)
        out.append(above.yes_no("dep_above_at_condition", stem, shown > float(threshold)))
    return out


def _before_medication(ask: Ask, numeric: Sequence[Series]) -> list[Question | None]:
    """The latest value on or before the day a medication was first prescribed."""
    rng = ask.ctx.rng("dep_before_med")
    found = []
    for mg in medication_groups(ask.ctx):
        calls = mg.calls()
        if not mg.dated or calls is None:
            continue
        first = mg.days()[0]
        for s in numeric:
            earlier = [d for d in s.days() if d <= first]
            if earlier and (m := s.single(earlier[-1])) is not None:
                found.append((mg, calls, first, s, earlier[-1], m))
    rng.shuffle(found)
    out = []
    for mg, calls, first, s, when, m in found[:_MAX_DEPENDENT]:
        gold = [*mg.refs_on(first), *s.refs_on(when)]
        subject = ask.about(
            gold, [*calls, s.call(end=first)], {"medication": mg.concept.code, "code": s.concept.code}
        )
        stem = (
            f"What was the patient's most recent {s.name} on or before the day {mg.name} was first "
            f"prescribed?"
        )
        out.append(number_question(subject, "dep_before_med", stem, s, m))
    return out


def _at_vaccine(ask: Ask, numeric: Sequence[Series]) -> list[Question | None]:
    """The value on the day a vaccine was first given."""
    rng = ask.ctx.rng("dep_at_vaccine")
    out = []
    for v, s, m in _values_on(rng, [(v, v.days()[0]) for v in vaccine_groups(ask.ctx) if v.dated], numeric):
        first = v.days()[0]
        gold = [*v.refs_on(first), *s.refs_on(first)]
        subject = ask.about(
            gold, [v.call(), s.call(first, first)], {"vaccine": v.concept.code, "code": s.concept.code}
        )
        stem = f"What was the patient's {s.name} on the day they first received the {v.name} vaccine?"
        out.append(number_question(subject, "dep_at_vaccine", stem, s, m))
    return out


def _at_peak(ask: Ask, numeric: Sequence[Series]) -> list[Question | None]:
    """A value on the day in year Y when another value was at its highest that year."""
    ctx = ask.ctx
    rng = ctx.rng("dep_at_peak")
    found = []
    for b in numeric:
        for year in sorted({d.year for d in b.days()}):
            in_year = [m for m in b.facts if m.day is not None and m.day.year == year and m.value is not None]
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
    out = []
    for b, year, peak, call, a, m in found[:_MAX_DEPENDENT]:
        params = {"peak_code": b.concept.code, "year": year, "code": a.concept.code}
        subject = ask.about([*b.refs_on(peak), *a.refs_on(peak)], [call, a.call(peak, peak)], params)
        stem = (
            f"What was the patient's {a.name} on the day in {year} when their {b.name} was at its "
            f"highest that year?"
        )
        out.append(number_question(subject, "dep_at_peak", stem, a, m))
    return out
