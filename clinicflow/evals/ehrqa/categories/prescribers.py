"""Prescriber questions: who prescribed X on day D (short answer, multiple choice), was it clinician Y."""

from __future__ import annotations

from clinicflow.evals.ehrqa.categories.ask import Ask, kept
from clinicflow.evals.ehrqa.categories.base import Context, day
from clinicflow.evals.ehrqa.categories.medication_groups import MedGroup, medication_groups
from clinicflow.evals.ehrqa.facts import MedicationFact, name_tokens
from clinicflow.evals.ehrqa.questions import Question

__all__ = ["medication_prescriber"]


def _practitioners(ctx: Context) -> list[str]:
    names = [*ctx.corpus.practitioners]
    return sorted(set(names))


def medication_prescriber(ctx: Context) -> list[Question]:
    """Who prescribed X on day D (short answer, multiple choice), was it clinician Y (yes/no)."""
    ask = Ask(ctx, "medication_prescriber")
    out: list[Question | None] = []
    people = _practitioners(ctx)
    for g in medication_groups(ctx):
        for when in g.days():
            fact = g.single(when)
            if fact is None or not fact.prescriber or not name_tokens(fact.prescriber):
                continue
            tokens = set(name_tokens(fact.prescriber))
            others = [p for p in people if not (set(name_tokens(p)) & tokens) and name_tokens(p)]
            params = {"code": g.concept.code, "day": day(when)}
            out += _about_prescription(ask.about([fact.ref], g.day_calls(when), params), g, fact, others)
    return kept(out)


def _about_prescription(
    subject: Ask, g: MedGroup, fact: MedicationFact, others: list[str]
) -> list[Question | None]:
    assert fact.prescriber is not None and fact.authored is not None
    when = day(fact.authored)
    support = [s for s in (fact.prescriber_ref, fact.encounter_ref) if s]
    stem = f"Who prescribed {g.name} to the patient on {when}?"
    out = [subject.value("presc_name", "name", stem, fact.prescriber, support_ids=support)]
    rng = subject.ctx.rng(f"presc|{fact.ref}")
    stem = f"Which clinician prescribed {g.name} to the patient on {when}?"
    wrong = rng.sample(others, min(3, len(others)))
    out.append(subject.choice(rng, "presc_pick", stem, fact.prescriber, wrong, support_ids=support))
    truth = rng.random() < 0.5 or not others
    person = fact.prescriber if truth else rng.choice(others)
    stem = f"Was the prescription of {g.name} on {when} written by {person}?"
    out.append(subject.plus(person=person).yes_no("presc_check", stem, truth, support_ids=support))
    return out
