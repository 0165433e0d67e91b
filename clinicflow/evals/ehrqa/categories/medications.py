"""Medication questions: current, existence, prescriber, prescription date, and the condition treated.

"Prescribed" means a MedicationRequest with status active, stopped or completed. "Current on day R"
means an active MedicationRequest authored on or before R; current-status questions are asked only when
R is on or after the last day in the record, since a status describes the record as exported.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clinicflow.evals.ehrqa.categories.base import Context, day, search_code
from clinicflow.evals.ehrqa.categories.conditions import CondGroup, condition_groups
from clinicflow.evals.ehrqa.facts import Concept, ConditionFact, MedicationFact, name_tokens, norm_text
from clinicflow.evals.ehrqa.questions import Category, GoldCall, Question
from clinicflow.evals.ehrqa.terminology import distractor_concepts

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
_MAX_DAYS = 8


@dataclass
class MedGroup:
    """All usable prescriptions of one medication code."""

    concept: Concept
    facts: list[MedicationFact]

    @property
    def name(self) -> str:
        return self.concept.display or ""

    @property
    def dated(self) -> bool:
        return all(f.authored is not None for f in self.facts)

    def days(self) -> list[dt.date]:
        return sorted({f.authored for f in self.facts if f.authored is not None})

    def on(self, when: dt.date) -> list[MedicationFact]:
        return [f for f in self.facts if f.authored == when]

    def calls(self, facts: Sequence[MedicationFact] | None = None) -> list[GoldCall] | None:
        """A search by code; prescriptions naming a Medication resource are found by their day instead."""
        facts = self.facts if facts is None else facts
        if not any(f.by_reference for f in facts):
            return [GoldCall(resource_type="MedicationRequest", code=search_code(self.concept))]
        if any(f.authored is None for f in facts):
            return None
        return [
            GoldCall(resource_type="MedicationRequest", date_from=day(d), date_to=day(d))
            for d in sorted({f.authored for f in facts if f.authored is not None})
        ]

    def day_calls(self, when: dt.date) -> list[GoldCall]:
        code = None if any(f.by_reference for f in self.facts) else search_code(self.concept)
        return [
            GoldCall(resource_type="MedicationRequest", code=code, date_from=day(when), date_to=day(when))
        ]


def medication_groups(ctx: Context) -> list[MedGroup]:
    """Prescriptions grouped by code: codes with a display no other code shares, none tainted."""
    return ctx.code_groups("medication", ctx.facts.medications, MedGroup)


def _all_usable(ctx: Context, groups: Sequence[MedGroup]) -> bool:
    """Every prescription in the record belongs to a usable, dated group."""
    return (
        not ctx.facts.tainted.get("medication")
        and sum(len(g.facts) for g in groups) == len(ctx.facts.medications)
        and all(g.dated for g in groups)
    )


def _absent(ctx: Context) -> list[Concept]:
    pool = [*ctx.corpus.concepts.get("medication", []), *distractor_concepts("medication")]
    return ctx.absent_concepts("medication", pool)


def _absent_call(concept: Concept) -> GoldCall:
    return GoldCall(resource_type="MedicationRequest", code=search_code(concept), expect_absent=True)


def _newest(group: MedGroup) -> list[MedicationFact]:
    dated = [f for f in group.facts if f.authored is not None]
    if len(dated) != len(group.facts):
        return group.facts
    last = max(f.authored for f in dated if f.authored is not None)
    return [f for f in dated if f.authored == last][:1]


def _is_current(fact: MedicationFact, ref: dt.date) -> bool:
    return fact.status == "active" and fact.authored is not None and fact.authored <= ref


def medication_current(ctx: Context) -> list[Question]:
    """Is X current (yes/no), which option is current, how many current, status of the latest order."""
    cat: Category = "medication_current"
    groups = medication_groups(ctx)
    out: list[Question | None] = []
    if ctx.facts.latest_day is not None and ctx.ref < ctx.facts.latest_day:
        return []
    note = "(a prescription is current when its status is active)"
    absent = _absent(ctx)
    rng = ctx.rng("med_current")
    dated = [g for g in groups if g.dated]
    current = {g.concept.code: [f for f in g.facts if _is_current(f, ctx.ref)] for g in dated}
    for g in dated:
        calls = g.calls()
        if calls is None:
            continue
        refs = [f.ref for f in current[g.concept.code]] or [f.ref for f in g.facts]
        out.append(
            ctx.yes_no(
                answer=bool(current[g.concept.code]),
                category=cat,
                qtype="med_current",
                stem=f"As of {ctx.ref_s}, is the patient currently prescribed {g.name} {note}?",
                gold_ids=refs,
                calls=calls,
                params={"code": g.concept.code, "ref": ctx.ref_s},
            )
        )
    for c in rng.sample(absent, min(2, len(absent))):
        out.append(
            ctx.yes_no(
                answer=False,
                category=cat,
                qtype="med_current",
                stem=f"As of {ctx.ref_s}, is the patient currently prescribed {c.display} {note}?",
                gold_ids=[],
                calls=[_absent_call(c)],
                params={"code": c.code, "ref": ctx.ref_s},
                refusal_ok=True,
            )
        )
    rng = ctx.rng("med_current_pick")
    active = [g for g in dated if current[g.concept.code]]
    inactive = [g for g in dated if not current[g.concept.code]]
    for g in active:
        calls = g.calls()
        if calls is None:
            continue
        wrong_present = rng.sample(inactive, min(2, len(inactive)))
        wrong_absent = rng.sample(absent, min(3 - len(wrong_present), len(absent)))
        out.append(
            ctx.choice(
                rng,
                correct=g.name,
                wrong=[w.name for w in wrong_present] + [str(c.display) for c in wrong_absent],
                category=cat,
                qtype="med_current_pick",
                stem=f"As of {ctx.ref_s}, which of these medications is the patient currently prescribed "
                f"{note}?",
                gold_ids=[f.ref for f in current[g.concept.code]],
                calls=[*calls, *(_absent_call(c) for c in wrong_absent)],
                params={"code": g.concept.code, "ref": ctx.ref_s},
            )
        )
    if groups and _all_usable(ctx, groups):
        call = GoldCall(resource_type="MedicationRequest")
        if {r.key for r in ctx.view.matches(call)} <= ctx.view.shown(call):
            out.append(
                ctx.make(
                    category=cat,
                    qtype="med_current_count",
                    kind="integer",
                    stem=f"As of {ctx.ref_s}, how many different medications is the patient currently "
                    f"prescribed {note}?",
                    answer=str(len(active)),
                    gold_ids=[f.ref for g in active for f in current[g.concept.code]],
                    calls=[call],
                    params={"ref": ctx.ref_s},
                    refusal_ok=not active,
                )
            )
    for g in dated:
        latest = _newest(g)
        calls = g.calls(latest)
        if len(latest) != 1 or calls is None or latest[0].status not in _STATUSES:
            continue
        out.append(
            ctx.choice(
                ctx.rng(f"med_status|{g.concept.code}"),
                correct=latest[0].status,
                wrong=[s for s in _STATUSES if s != latest[0].status],
                category=cat,
                qtype="med_status",
                stem=f"What is the status of the patient's most recent prescription of {g.name}?",
                gold_ids=[latest[0].ref],
                calls=calls,
                params={"code": g.concept.code},
            )
        )
    return [q for q in out if q is not None]


def medication_existence(ctx: Context) -> list[Question]:
    """Was X ever prescribed (yes/no, multiple choice), how many times, in a given year."""
    cat: Category = "medication_existence"
    groups = medication_groups(ctx)
    absent = _absent(ctx)
    out: list[Question | None] = []
    rng = ctx.rng("med_exists")
    for g in groups:
        newest = _newest(g)
        calls = g.calls(newest)
        if calls is None:
            continue
        out.append(
            ctx.yes_no(
                answer=True,
                category=cat,
                qtype="med_exists",
                stem=f"Has the patient ever been prescribed {g.name}?",
                gold_ids=[f.ref for f in newest],
                calls=calls,
                params={"code": g.concept.code},
            )
        )
        wrong = rng.sample(absent, min(3, len(absent)))
        out.append(
            ctx.choice(
                rng,
                correct=g.name,
                wrong=[str(c.display) for c in wrong],
                category=cat,
                qtype="med_exists_pick",
                stem="Which of these medications has the patient been prescribed?",
                gold_ids=[f.ref for f in newest],
                calls=[*calls, *(_absent_call(c) for c in wrong)],
                params={"code": g.concept.code, "wrong_codes": [c.code for c in wrong]},
            )
        )
        all_calls = g.calls()
        if all_calls is not None:
            out.append(
                ctx.make(
                    category=cat,
                    qtype="med_rx_count",
                    kind="integer",
                    stem=f"How many times has {g.name} been prescribed to the patient?",
                    answer=str(len(g.facts)),
                    gold_ids=[f.ref for f in g.facts],
                    calls=all_calls,
                    params={"code": g.concept.code},
                )
            )
    for c in rng.sample(absent, min(max(3, len(groups)), len(absent))):
        out.append(
            ctx.yes_no(
                answer=False,
                category=cat,
                qtype="med_exists",
                stem=f"Has the patient ever been prescribed {c.display}?",
                gold_ids=[],
                calls=[_absent_call(c)],
                params={"code": c.code},
                refusal_ok=True,
            )
        )
    for g in groups:
        if not g.dated or any(f.by_reference for f in g.facts):
            continue
        rng = ctx.rng(f"med_in_year|{g.concept.code}")
        days = g.days()
        with_rx = sorted({d.year for d in days})
        without = [y for y in range(days[0].year, ctx.ref.year + 1) if y not in with_rx]
        for year in rng.sample(with_rx, min(1, len(with_rx))) + rng.sample(without, min(1, len(without))):
            refs = [f.ref for f in g.facts if f.authored is not None and f.authored.year == year]
            call = GoldCall(
                resource_type="MedicationRequest",
                code=search_code(g.concept),
                date_from=f"{year}-01-01",
                date_to=f"{year}-12-31",
                expect_absent=not refs,
            )
            out.append(
                ctx.yes_no(
                    answer=bool(refs),
                    category=cat,
                    qtype="med_in_year",
                    stem=f"Was the patient prescribed {g.name} in {year}?",
                    gold_ids=refs,
                    calls=[call],
                    params={"code": g.concept.code, "year": year},
                    refusal_ok=not refs,
                )
            )
    return [q for q in out if q is not None]


def _single(group: MedGroup, when: dt.date) -> MedicationFact | None:
    facts = group.on(when)
    return facts[0] if len(facts) == 1 else None


def _practitioners(ctx: Context) -> list[str]:
    names = [*ctx.corpus.practitioners]
    return sorted(set(names))


def medication_prescriber(ctx: Context) -> list[Question]:
    """Who prescribed X on day D (short answer, multiple choice), was it clinician Y (yes/no)."""
    cat: Category = "medication_prescriber"
    out: list[Question | None] = []
    people = _practitioners(ctx)
    for g in medication_groups(ctx):
        for when in g.days():
            fact = _single(g, when)
            if fact is None or not fact.prescriber or not name_tokens(fact.prescriber):
                continue
            tokens = set(name_tokens(fact.prescriber))
            others = [p for p in people if not (set(name_tokens(p)) & tokens) and name_tokens(p)]
            params = {"code": g.concept.code, "day": day(when)}
            base: dict[str, Any] = {
                "category": cat,
                "gold_ids": [fact.ref],
                "support_ids": [s for s in (fact.prescriber_ref, fact.encounter_ref) if s],
                "calls": g.day_calls(when),
            }
            out.append(
                ctx.make(
                    qtype="presc_name",
                    kind="name",
                    stem=f"Who prescribed {g.name} to the patient on {day(when)}?",
                    answer=fact.prescriber,
                    params=params,
                    **base,
                )
            )
            rng = ctx.rng(f"presc|{fact.ref}")
            out.append(
                ctx.choice(
                    rng,
                    correct=fact.prescriber,
                    wrong=rng.sample(others, min(3, len(others))),
                    qtype="presc_pick",
                    stem=f"Which clinician prescribed {g.name} to the patient on {day(when)}?",
                    params=params,
                    **base,
                )
            )
            truth = rng.random() < 0.5 or not others
            person = fact.prescriber if truth else rng.choice(others)
            out.append(
                ctx.yes_no(
                    answer=truth,
                    qtype="presc_check",
                    stem=f"Was the prescription of {g.name} on {day(when)} written by {person}?",
                    params={**params, "person": person},
                    **base,
                )
            )
    return [q for q in out if q is not None]


def medication_prescription_date(ctx: Context) -> list[Question]:
    """First and last prescription day, which drug on day D, days between, days before the reference day."""
    cat: Category = "medication_prescription_date"
    groups = medication_groups(ctx)
    dated = [g for g in groups if g.dated]
    out: list[Question | None] = []
    for g in dated:
        days = g.days()
        calls = g.calls()
        if calls is None:
            continue
        params = {"code": g.concept.code}
        first_refs = [f.ref for f in g.on(days[0])]
        last_refs = [f.ref for f in g.on(days[-1])]
        out.append(
            ctx.make(
                category=cat,
                qtype="rx_first_date",
                kind="date",
                stem=f"On what date was {g.name} first prescribed to the patient?",
                answer=day(days[0]),
                gold_ids=first_refs,
                calls=calls,
                params=params,
            )
        )
        if len(days) >= 2:
            out.append(
                ctx.make(
                    category=cat,
                    qtype="rx_last_date",
                    kind="date",
                    stem=f"On what date was {g.name} most recently prescribed to the patient?",
                    answer=day(days[-1]),
                    gold_ids=last_refs,
                    calls=calls,
                    params=params,
                )
            )
        if days[-1] <= ctx.ref:
            out.append(
                ctx.make(
                    category=cat,
                    qtype="rx_days_before_ref",
                    kind="integer",
                    stem=f"How many days before {ctx.ref_s} was {g.name} last prescribed to the patient?",
                    answer=str((ctx.ref - days[-1]).days),
                    gold_ids=last_refs,
                    calls=calls,
                    params={**params, "ref": ctx.ref_s},
                )
            )
    pairs = [(a, b) for a, b in itertools.combinations(dated, 2) if a.days()[0] != b.days()[0]]
    rng = ctx.rng("rx_days_between")
    rng.shuffle(pairs)
    for a, b in pairs[:_MAX_PAIRS]:
        calls_a, calls_b = a.calls(), b.calls()
        if calls_a is None or calls_b is None:
            continue
        da, db = a.days()[0], b.days()[0]
        out.append(
            ctx.make(
                category=cat,
                qtype="rx_days_between",
                kind="integer",
                stem=f"How many days passed between the first prescription of {a.name} and the first "
                f"prescription of {b.name}?",
                answer=str(abs((db - da).days)),
                gold_ids=[*(f.ref for f in a.on(da)), *(f.ref for f in b.on(db))],
                calls=[*calls_a, *calls_b],
                params={"code_a": a.concept.code, "code_b": b.concept.code},
            )
        )
    if groups and _all_usable(ctx, groups):
        absent = _absent(ctx)
        rng = ctx.rng("rx_on_date_pick")
        all_days = sorted({d for g in groups for d in g.days()})
        for when in rng.sample(all_days, min(_MAX_DAYS, len(all_days))):
            given = [g for g in groups if g.on(when)]
            correct = rng.choice(given)
            not_given = [g.name for g in groups if not g.on(when)]
            rng.shuffle(not_given)
            wrong = not_given[:2] + [str(c.display) for c in rng.sample(absent, min(3, len(absent)))]
            out.append(
                ctx.choice(
                    rng,
                    correct=correct.name,
                    wrong=wrong,
                    category=cat,
                    qtype="rx_on_date_pick",
                    stem=f"Which of these medications was prescribed to the patient on {day(when)}?",
                    gold_ids=[f.ref for f in correct.on(when)],
                    calls=[
                        GoldCall(resource_type="MedicationRequest", date_from=day(when), date_to=day(when))
                    ],
                    params={"code": correct.concept.code, "day": day(when)},
                )
            )
    return [q for q in out if q is not None]


@dataclass
class _Reason:
    fact: MedicationFact
    group: MedGroup
    name: str
    condition: ConditionFact | None
    cond_group: CondGroup | None


def _reasons(ctx: Context) -> list[_Reason]:
    """Prescriptions with exactly one stated reason that has a name, one per (medication, day)."""
    conditions = {f.ref: f for f in ctx.facts.conditions}
    cond_groups = {g.concept.code: g for g in condition_groups(ctx)}
    out = []
    for g in medication_groups(ctx):
        for when in g.days():
            fact = _single(g, when)
            if fact is None or len(fact.reason_refs) + len(fact.reason_concepts) != 1:
                continue
            if fact.reason_refs:
                condition = conditions.get(fact.reason_refs[0])
                if condition is None or condition.concept is None:
                    continue
                group = cond_groups.get(condition.concept.code)
                if group is None:
                    continue
                out.append(_Reason(fact, g, group.name, condition, group))
            elif fact.reason_concepts[0].display:
                out.append(_Reason(fact, g, fact.reason_concepts[0].name, None, None))
    return out


def medication_for_condition(ctx: Context) -> list[Question]:
    """Which condition was X prescribed for, which drug treated condition C, was X given for C."""
    cat: Category = "medication_for_condition"
    reasons = _reasons(ctx)
    cond_groups = condition_groups(ctx)
    out: list[Question | None] = []
    for r in reasons:
        when = r.fact.authored
        assert when is not None
        gold = [r.fact.ref] + ([r.condition.ref] if r.condition else [])
        calls = r.group.day_calls(when) + ([r.cond_group.call()] if r.cond_group else [])
        params = {"code": r.group.concept.code, "day": day(when)}
        stem = f"For which condition was {r.group.name} prescribed to the patient on {day(when)}?"
        out.append(
            ctx.make(
                category=cat,
                qtype="reason_condition",
                kind="text",
                stem=stem,
                answer=r.name,
                gold_ids=gold,
                calls=calls,
                params=params,
            )
        )
        rng = ctx.rng(f"reason|{r.fact.ref}")
        others = [g.name for g in cond_groups if norm_text(g.name) != norm_text(r.name)]
        out.append(
            ctx.choice(
                rng,
                correct=r.name,
                wrong=rng.sample(others, min(3, len(others))),
                category=cat,
                qtype="reason_pick",
                stem=stem,
                gold_ids=gold,
                calls=calls,
                params=params,
            )
        )
        truth = rng.random() < 0.5 or not others
        condition = r.name if truth else rng.choice(others)
        out.append(
            ctx.yes_no(
                answer=truth,
                category=cat,
                qtype="reason_check",
                stem=f"Was the {r.group.name} prescribed on {day(when)} given for {condition}?",
                gold_ids=gold,
                calls=calls,
                params={**params, "condition": condition},
            )
        )
    out += _medication_for(ctx, reasons)
    return [q for q in out if q is not None]


def _medication_for(ctx: Context, reasons: Sequence[_Reason]) -> list[Question | None]:
    """Which medication was prescribed for condition C that began on day D (multiple choice)."""
    by_condition: dict[str, list[_Reason]] = {}
    for r in reasons:
        if r.condition is not None and r.condition.onset is not None:
            by_condition.setdefault(r.condition.ref, []).append(r)
    groups = medication_groups(ctx)
    absent = _absent(ctx)
    out: list[Question | None] = []
    for ref, linked in sorted(by_condition.items()):
        condition, cond_group = linked[0].condition, linked[0].cond_group
        assert condition is not None and condition.onset is not None and cond_group is not None
        if sum(1 for f in cond_group.facts if f.onset == condition.onset) != 1:
            continue
        all_linked = {
            g.concept.code
            for g in groups
            for f in g.facts
            if ref in f.reason_refs or any(c.code == cond_group.concept.code for c in f.reason_concepts)
        } | {r.group.concept.code for r in linked}
        rng = ctx.rng(f"reason_med|{ref}")
        correct = rng.choice(linked)
        unlinked = [g.name for g in groups if g.concept.code not in all_linked]
        rng.shuffle(unlinked)
        wrong = unlinked[:2] + [str(c.display) for c in rng.sample(absent, min(3, len(absent)))]
        when = correct.fact.authored
        assert when is not None
        out.append(
            ctx.choice(
                rng,
                correct=correct.group.name,
                wrong=wrong,
                category="medication_for_condition",
                qtype="reason_med_pick",
                stem=f"Which of these medications was prescribed for the patient's {cond_group.name} that "
                f"began on {day(condition.onset)}?",
                gold_ids=[correct.fact.ref, ref],
                calls=[cond_group.call(), *correct.group.day_calls(when)],
                params={"condition": ref, "code": correct.group.concept.code},
            )
        )
    return out
