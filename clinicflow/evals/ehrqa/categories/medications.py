"""Medication questions: current, existence and prescription date (prescriber and the condition treated
live in `prescribers` and `reasons`; the grouping of prescriptions in `medication_groups`).

Current-status questions are asked only when the reference day R is on or after the last day in the
record, since a status describes the record as exported.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Sequence

from clinicflow.evals.ehrqa.categories.ask import Ask, DayPick, day_picks, kept, years_to_ask
from clinicflow.evals.ehrqa.categories.base import Context, day, search_code
from clinicflow.evals.ehrqa.categories.medication_groups import (
    MedGroup,
    absent_call,
    absent_medications,
    all_usable,
    medication_groups,
    newest,
)
from clinicflow.evals.ehrqa.categories.prescribers import medication_prescriber
from clinicflow.evals.ehrqa.categories.reasons import medication_for_condition
from clinicflow.evals.ehrqa.facts import Concept, MedicationFact
from clinicflow.evals.ehrqa.questions import GoldCall, Question

__all__ = [
    "MedGroup",
    "medication_current",
    "medication_existence",
    "medication_for_condition",
    "medication_groups",
    "medication_prescriber",
    "medication_prescription_date",
]

_STATUSES = ["active", "stopped", "completed", "on-hold"]
_MAX_PAIRS = 30
_BY_DAY = DayPick(
    "rx_on_date_pick",
    "MedicationRequest",
    "Which of these medications was prescribed to the patient on {day}?",
    most=8,
)
_NOTE = "(a prescription is current when its status is active)"


def _is_current(fact: MedicationFact, ref: dt.date) -> bool:
    return fact.status == "active" and fact.authored is not None and fact.authored <= ref


def medication_current(ctx: Context) -> list[Question]:
    """Is X current (yes/no), which option is current, how many current, status of the latest order."""
    if ctx.facts.latest_day is not None and ctx.ref < ctx.facts.latest_day:
        return []
    ask = Ask(ctx, "medication_current")
    groups = medication_groups(ctx)
    absent = absent_medications(ctx)
    dated = [g for g in groups if g.dated]
    current = {g.concept.code: [f for f in g.facts if _is_current(f, ctx.ref)] for g in dated}
    return kept(
        [
            *_is_current_now(ask, dated, current, absent),
            *_current_pick(ask, dated, current, absent),
            *_current_count(ask, groups, [g for g in dated if current[g.concept.code]], current),
            *_status(ask, dated),
        ]
    )


def _is_current_now(
    ask: Ask, dated: Sequence[MedGroup], current: dict[str, list[MedicationFact]], absent: list[Concept]
) -> list[Question | None]:
    ctx = ask.ctx
    out = []
    for g in dated:
        calls = g.calls()
        if calls is None:
            continue
        refs = [f.ref for f in current[g.concept.code]] or [f.ref for f in g.facts]
        subject = ask.about(refs, calls, {"code": g.concept.code, "ref": ctx.ref_s})
        stem = f"As of {ctx.ref_s}, is the patient currently prescribed {g.name} {_NOTE}?"
        out.append(subject.yes_no("med_current", stem, bool(current[g.concept.code])))
    for c in ctx.rng("med_current").sample(absent, min(2, len(absent))):
        stem = f"As of {ctx.ref_s}, is the patient currently prescribed {c.display} {_NOTE}?"
        out.append(ask.absent("med_current", stem, [absent_call(c)], {"code": c.code, "ref": ctx.ref_s}))
    return out


def _current_pick(
    ask: Ask, dated: Sequence[MedGroup], current: dict[str, list[MedicationFact]], absent: list[Concept]
) -> list[Question | None]:
    ctx = ask.ctx
    rng = ctx.rng("med_current_pick")
    inactive = [g for g in dated if not current[g.concept.code]]
    out = []
    for g in (g for g in dated if current[g.concept.code]):
        calls = g.calls()
        if calls is None:
            continue
        wrong_present = rng.sample(inactive, min(2, len(inactive)))
        wrong_absent = rng.sample(absent, min(3 - len(wrong_present), len(absent)))
        gold = [f.ref for f in current[g.concept.code]]
        calls = [*calls, *(absent_call(c) for c in wrong_absent)]
        subject = ask.about(gold, calls, {"code": g.concept.code, "ref": ctx.ref_s})
        stem = f"As of {ctx.ref_s}, which of these medications is the patient currently prescribed {_NOTE}?"
        wrong = [w.name for w in wrong_present] + [str(c.display) for c in wrong_absent]
        out.append(subject.choice(rng, "med_current_pick", stem, g.name, wrong))
    return out


def _current_count(
    ask: Ask, groups: Sequence[MedGroup], active: Sequence[MedGroup], current: dict[str, list[MedicationFact]]
) -> list[Question | None]:
    """How many medications are current: only when every prescription would show in one search."""
    ctx = ask.ctx
    call = GoldCall(resource_type="MedicationRequest")
    if not groups or not all_usable(ctx, groups):
        return []
    if not {r.key for r in ctx.view.matches(call)} <= ctx.view.shown(call):
        return []
    gold = [f.ref for g in active for f in current[g.concept.code]]
    stem = f"As of {ctx.ref_s}, how many different medications is the patient currently prescribed {_NOTE}?"
    subject = ask.about(gold, [call], {"ref": ctx.ref_s})
    return [subject.value("med_current_count", "integer", stem, str(len(active)), refusal_ok=not active)]


def _status(ask: Ask, dated: Sequence[MedGroup]) -> list[Question | None]:
    out = []
    for g in dated:
        latest = newest(g)
        calls = g.calls(latest)
        if len(latest) != 1 or calls is None or latest[0].status not in _STATUSES:
            continue
        status = latest[0].status
        subject = ask.about([latest[0].ref], calls, {"code": g.concept.code})
        stem = f"What is the status of the patient's most recent prescription of {g.name}?"
        wrong = [s for s in _STATUSES if s != status]
        out.append(
            subject.choice(ask.ctx.rng(f"med_status|{g.concept.code}"), "med_status", stem, status, wrong)
        )
    return out


def medication_existence(ctx: Context) -> list[Question]:
    """Was X ever prescribed (yes/no, multiple choice), how many times, in a given year."""
    ask = Ask(ctx, "medication_existence")
    groups = medication_groups(ctx)
    absent = absent_medications(ctx)
    rng = ctx.rng("med_exists")
    out: list[Question | None] = []
    for g in groups:
        out += _ever(ask, rng, g, absent)
    for c in rng.sample(absent, min(max(3, len(groups)), len(absent))):
        stem = f"Has the patient ever been prescribed {c.display}?"
        out.append(ask.absent("med_exists", stem, [absent_call(c)], {"code": c.code}))
    for g in groups:
        if g.dated and not any(f.by_reference for f in g.facts):
            out += _in_years(ask, g)
    return kept(out)


def _ever(ask: Ask, rng: random.Random, g: MedGroup, absent: list[Concept]) -> list[Question | None]:
    """Ever prescribed (yes/no and multiple choice) and how many times."""
    latest = newest(g)
    calls = g.calls(latest)
    if calls is None:
        return []
    subject = ask.about([f.ref for f in latest], calls, {"code": g.concept.code})
    out = [subject.yes_no("med_exists", f"Has the patient ever been prescribed {g.name}?", True)]
    wrong = rng.sample(absent, min(3, len(absent)))
    picking = subject.about(subject.gold_ids, [*calls, *(absent_call(c) for c in wrong)], subject.params)
    stem = "Which of these medications has the patient been prescribed?"
    picking = picking.plus(wrong_codes=[c.code for c in wrong])
    out.append(picking.choice(rng, "med_exists_pick", stem, g.name, [str(c.display) for c in wrong]))
    all_calls = g.calls()
    if all_calls is not None:
        stem = f"How many times has {g.name} been prescribed to the patient?"
        counted = subject.about([f.ref for f in g.facts], all_calls, subject.params)
        out.append(counted.value("med_rx_count", "integer", stem, str(len(g.facts))))
    return out


def _in_years(ask: Ask, g: MedGroup) -> list[Question | None]:
    """Was X prescribed in year Y: one year with a prescription and one without, up to the reference."""
    rng = ask.ctx.rng(f"med_in_year|{g.concept.code}")
    out = []
    for year in years_to_ask(rng, g.days(), ask.ctx.ref, 1):
        refs = [f.ref for f in g.facts if f.authored is not None and f.authored.year == year]
        call = GoldCall(
            resource_type="MedicationRequest",
            code=search_code(g.concept),
            date_from=f"{year}-01-01",
            date_to=f"{year}-12-31",
            expect_absent=not refs,
        )
        subject = ask.about(refs, [call], {"code": g.concept.code, "year": year})
        stem = f"Was the patient prescribed {g.name} in {year}?"
        out.append(subject.yes_no("med_in_year", stem, bool(refs), refusal_ok=not refs))
    return out


def medication_prescription_date(ctx: Context) -> list[Question]:
    """First and last prescription day, which drug on day D, days between, days before the reference day."""
    ask = Ask(ctx, "medication_prescription_date")
    groups = medication_groups(ctx)
    dated = [g for g in groups if g.dated]
    out: list[Question | None] = []
    for g in dated:
        out += _rx_dates(ask, g)
    out += _days_between(ask, dated)
    if groups and all_usable(ctx, groups):
        out += day_picks(ask, _BY_DAY, groups, [str(c.display) for c in absent_medications(ctx)])
    return kept(out)


def _rx_dates(ask: Ask, g: MedGroup) -> list[Question | None]:
    """First and last prescription day, and the days from the last one to the reference day."""
    ctx = ask.ctx
    days = g.days()
    calls = g.calls()
    if calls is None:
        return []
    first, last = days[0], days[-1]
    subject = ask.about(g.refs_on(first), calls, {"code": g.concept.code})
    stem = f"On what date was {g.name} first prescribed to the patient?"
    out = [subject.value("rx_first_date", "date", stem, day(first))]
    latest = subject.about(g.refs_on(last), calls, subject.params)
    if len(days) >= 2:
        stem = f"On what date was {g.name} most recently prescribed to the patient?"
        out.append(latest.value("rx_last_date", "date", stem, day(last)))
    if last <= ctx.ref:
        stem = f"How many days before {ctx.ref_s} was {g.name} last prescribed to the patient?"
        out.append(
            latest.plus(ref=ctx.ref_s).value(
                "rx_days_before_ref", "integer", stem, str((ctx.ref - last).days)
            )
        )
    return out


def _days_between(ask: Ask, dated: Sequence[MedGroup]) -> list[Question | None]:
    """Days between the first prescriptions of two medications."""
    pairs = [(a, b) for a, b in itertools.combinations(dated, 2) if a.days()[0] != b.days()[0]]
    ask.ctx.rng("rx_days_between").shuffle(pairs)
    out = []
    for a, b in pairs[:_MAX_PAIRS]:
        calls_a, calls_b = a.calls(), b.calls()
        if calls_a is None or calls_b is None:
            continue
        da, db = a.days()[0], b.days()[0]
        gold = [*a.refs_on(da), *b.refs_on(db)]
        subject = ask.about(gold, [*calls_a, *calls_b], {"code_a": a.concept.code, "code_b": b.concept.code})
        stem = (
            f"How many days passed between the first prescription of {a.name} and the first "
            f"prescription of {b.name}?"
        )
        out.append(subject.value("rx_days_between", "integer", stem, str(abs((db - da).days))))
    return out
