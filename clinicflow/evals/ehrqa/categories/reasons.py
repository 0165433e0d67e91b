"""Medication-for-condition questions: which condition X was prescribed for, which drug treated C, and
whether X was given for C. Only prescriptions with exactly one named reason are asked about."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clinicflow.evals.ehrqa.categories.ask import Ask, kept
from clinicflow.evals.ehrqa.categories.base import Context, day
from clinicflow.evals.ehrqa.categories.conditions import CondGroup, condition_groups
from clinicflow.evals.ehrqa.categories.medication_groups import (
    MedGroup,
    absent_medications,
    medication_groups,
)
from clinicflow.evals.ehrqa.facts import ConditionFact, MedicationFact, norm_text
from clinicflow.evals.ehrqa.questions import Question

__all__ = ["medication_for_condition"]


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
            fact = g.single(when)
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
    ask = Ask(ctx, "medication_for_condition")
    reasons = _reasons(ctx)
    cond_names = [g.name for g in condition_groups(ctx)]
    out: list[Question | None] = []
    for r in reasons:
        out += _about_reason(ask, r, cond_names)
    out += _medication_for(ask, reasons)
    return kept(out)


def _about_reason(ask: Ask, r: _Reason, cond_names: Sequence[str]) -> list[Question | None]:
    when = r.fact.authored
    assert when is not None
    gold = [r.fact.ref] + ([r.condition.ref] if r.condition else [])
    calls = r.group.day_calls(when) + ([r.cond_group.call()] if r.cond_group else [])
    subject = ask.about(gold, calls, {"code": r.group.concept.code, "day": day(when)})
    stem = f"For which condition was {r.group.name} prescribed to the patient on {day(when)}?"
    out = [subject.value("reason_condition", "text", stem, r.name)]
    rng = ask.ctx.rng(f"reason|{r.fact.ref}")
    others = [name for name in cond_names if norm_text(name) != norm_text(r.name)]
    out.append(subject.choice(rng, "reason_pick", stem, r.name, rng.sample(others, min(3, len(others)))))
    truth = rng.random() < 0.5 or not others
    condition = r.name if truth else rng.choice(others)
    stem = f"Was the {r.group.name} prescribed on {day(when)} given for {condition}?"
    out.append(subject.plus(condition=condition).yes_no("reason_check", stem, truth))
    return out


def _medication_for(ask: Ask, reasons: Sequence[_Reason]) -> list[Question | None]:
    """Which medication was prescribed for condition C that began on day D (multiple choice)."""
    ctx = ask.ctx
    by_condition: dict[str, list[_Reason]] = {}
    for r in reasons:
        if r.condition is not None and r.condition.onset is not None:
            by_condition.setdefault(r.condition.ref, []).append(r)
    groups = medication_groups(ctx)
    absent = absent_medications(ctx)
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
        calls = [cond_group.call(), *correct.group.day_calls(when)]
        subject = ask.about(
            [correct.fact.ref, ref], calls, {"condition": ref, "code": correct.group.concept.code}
        )
        stem = (
            f"Which of these medications was prescribed for the patient's {cond_group.name} that "
            f"began on {day(condition.onset)}?"
        )
        out.append(subject.choice(rng, "reason_med_pick", stem, correct.group.name, wrong))
    return out
