"""Prescriptions grouped by medication code, and the helpers every medication category shares.

"Prescribed" means a MedicationRequest with status active, stopped or completed. "Current on day R"
means an active MedicationRequest authored on or before R.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from clinicflow.evals.ehrqa.categories.base import Context, day, search_code
from clinicflow.evals.ehrqa.categories.groups import FactGroup
from clinicflow.evals.ehrqa.facts import Concept, MedicationFact
from clinicflow.evals.ehrqa.questions import GoldCall
from clinicflow.evals.ehrqa.terminology import distractor_concepts

__all__ = ["MedGroup", "absent_call", "absent_medications", "all_usable", "medication_groups", "newest"]


class MedGroup(FactGroup[MedicationFact]):
    """All usable prescriptions of one medication code, each on the day authored."""

    def day_of(self, fact: MedicationFact) -> dt.date | None:
        return fact.authored

    @property
    def name(self) -> str:
        return self.concept.display or ""

    def single(self, when: dt.date) -> MedicationFact | None:
        """The prescription of that day when the day has exactly one."""
        facts = self.on(when)
        return facts[0] if len(facts) == 1 else None

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


def all_usable(ctx: Context, groups: Sequence[MedGroup]) -> bool:
    """Every prescription in the record belongs to a usable, dated group."""
    return (
        not ctx.facts.tainted.get("medication")
        and sum(len(g.facts) for g in groups) == len(ctx.facts.medications)
        and all(g.dated for g in groups)
    )


def absent_medications(ctx: Context) -> list[Concept]:
    """Medications of the run and the distractor list that the patient's record lacks."""
    pool = [*ctx.corpus.concepts.get("medication", []), *distractor_concepts("medication")]
    return ctx.absent_concepts("medication", pool)


def absent_call(concept: Concept) -> GoldCall:
    """The search for a medication the record lacks."""
    return GoldCall(resource_type="MedicationRequest", code=search_code(concept), expect_absent=True)


def newest(group: MedGroup) -> list[MedicationFact]:
    """The latest prescription of the group, or all of them when one is undated."""
    dated = [f for f in group.facts if f.authored is not None]
    if len(dated) != len(group.facts):
        return group.facts
    last = max(f.authored for f in dated if f.authored is not None)
    return [f for f in dated if f.authored == last][:1]
