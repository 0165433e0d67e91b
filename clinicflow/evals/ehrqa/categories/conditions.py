"""Condition questions: existence, onset, counts, order and status; and existence through the is-a table."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from clinicflow.evals.ehrqa.categories.base import Context, day, search_code
from clinicflow.evals.ehrqa.facts import SNOMED, Concept, ConditionFact, norm_text
from clinicflow.evals.ehrqa.questions import Category, GoldCall, Question
from clinicflow.evals.ehrqa.terminology import distractor_concepts

__all__ = [
    "CondGroup",
    "condition_existence",
    "condition_existence_transitive",
    "condition_groups",
    "snomed_coded_conditions",
]

_ACTIVE = frozenset({"active", "recurrence", "relapse"})
_RESOLVED = frozenset({"inactive", "remission", "resolved"})
_MAX_PAIRS = 40


@dataclass
class CondGroup:
    """All usable Condition entries with one code."""

    concept: Concept
    facts: list[ConditionFact]

    @property
    def name(self) -> str:
        return self.concept.name

    @property
    def refs(self) -> list[str]:
        return [f.ref for f in self.facts]

    @property
    def dated(self) -> bool:
        return all(f.onset is not None for f in self.facts)

    @property
    def first(self) -> dt.date:
        return min(f.onset for f in self.facts if f.onset is not None)

    @property
    def first_refs(self) -> list[str]:
        return [f.ref for f in self.facts if f.onset == self.first]

    def call(self) -> GoldCall:
        return GoldCall(resource_type="Condition", code=search_code(self.concept))


def condition_groups(ctx: Context) -> list[CondGroup]:
    """Conditions grouped by code: only codes with a display that no other code shares, none tainted."""
    return ctx.code_groups("condition", ctx.facts.conditions, CondGroup)


def snomed_coded_conditions(ctx: Context) -> bool:
    """Whether the patient's conditions carry SNOMED CT codes (what the is-a table knows); False for a
    record coded in ICD-10-CM alone, say."""
    return any(f.concept is not None and f.concept.system == SNOMED for f in ctx.facts.conditions)


def _newest(ctx: Context, refs: Sequence[str], call: GoldCall) -> list[str]:
    days = {r.key: r.day for r in ctx.view.matches(call)}
    best = max((days.get(ref, "") for ref in refs), default="")
    return [ref for ref in refs if days.get(ref, "") == best][:1]


def _diagnosed(concept: Concept) -> str:
    if (concept.display or "").rstrip().endswith("(disorder)"):
        return f"been diagnosed with {concept.name}"
    return f"had the condition '{concept.name}' recorded"


def _pool(ctx: Context) -> list[Concept]:
    return [*ctx.corpus.concepts.get("condition", []), *distractor_concepts("condition")]


def _absent(ctx: Context) -> list[Concept]:
    present = ctx.facts.codes.get("condition", set())
    hierarchy = ctx.hierarchy
    return ctx.absent_concepts(
        "condition", _pool(ctx), related=lambda c: any(hierarchy.related(c.code, p) for p in present)
    )


def _pairs(groups: Sequence[CondGroup], ctx: Context, qtype: str) -> list[tuple[CondGroup, CondGroup]]:
    dated = [g for g in groups if g.dated]
    pairs = [(a, b) for a, b in itertools.combinations(dated, 2) if a.first != b.first]
    rng = ctx.rng(qtype)
    rng.shuffle(pairs)
    return pairs[:_MAX_PAIRS]


def _status(group: CondGroup, ref: dt.date) -> bool | None:
    """True when an entry is active on `ref`, False when all are resolved, None when a status is unknown."""
    active = False
    for fact in group.facts:
        ended = fact.abated is not None and fact.abated <= ref
        if fact.clinical in _ACTIVE and not ended:
            if fact.abated is not None:
                return None
            active = True
        elif not ended and fact.clinical not in _RESOLVED:
            return None
    return active


def condition_existence(ctx: Context) -> list[Question]:
    """Was X ever diagnosed (yes/no, multiple choice), first onset, count, order, days between, status."""
    cat: Category = "condition_existence"
    groups = condition_groups(ctx)
    absent = _absent(ctx)
    out: list[Question | None] = []

    rng = ctx.rng("cond_exists")
    for g in groups:
        out.append(
            ctx.yes_no(
                answer=True,
                category=cat,
                qtype="cond_exists",
                stem=f"Has the patient ever {_diagnosed(g.concept)}?",
                gold_ids=_newest(ctx, g.refs, g.call()),
                calls=[g.call()],
                params={"code": g.concept.code},
            )
        )
    negatives = list(absent)
    rng.shuffle(negatives)
    for c in negatives[: max(3, len(groups))]:
        out.append(
            ctx.yes_no(
                answer=False,
                category=cat,
                qtype="cond_exists",
                stem=f"Has the patient ever {_diagnosed(c)}?",
                gold_ids=[],
                calls=[GoldCall(resource_type="Condition", code=search_code(c), expect_absent=True)],
                params={"code": c.code},
                refusal_ok=True,
            )
        )

    rng = ctx.rng("cond_pick")
    for g in groups:
        wrong = rng.sample(absent, min(3, len(absent)))
        out.append(
            ctx.choice(
                rng,
                correct=g.name,
                wrong=[c.name for c in wrong],
                category=cat,
                qtype="cond_pick",
                stem="Which of these conditions is recorded in the patient's record?",
                gold_ids=_newest(ctx, g.refs, g.call()),
                calls=[
                    g.call(),
                    *(
                        GoldCall(resource_type="Condition", code=search_code(c), expect_absent=True)
                        for c in wrong
                    ),
                ],
                params={"code": g.concept.code, "wrong_codes": [c.code for c in wrong]},
            )
        )

    for g in groups:
        if g.dated:
            out.append(
                ctx.make(
                    category=cat,
                    qtype="cond_first_onset",
                    kind="date",
                    stem=f"On what date was {g.name} first recorded for the patient (its onset date)?",
                    answer=day(g.first),
                    gold_ids=g.first_refs,
                    calls=[g.call()],
                    params={"code": g.concept.code},
                )
            )
        out.append(
            ctx.make(
                category=cat,
                qtype="cond_count",
                kind="integer",
                stem=f"How many separate entries for {g.name} does the patient's condition list hold?",
                answer=str(len(g.facts)),
                gold_ids=g.refs,
                calls=[g.call()],
                params={"code": g.concept.code},
            )
        )
        status = _status(g, ctx.ref)
        if status is not None:
            out.append(
                ctx.yes_no(
                    answer=status,
                    category=cat,
                    qtype="cond_active",
                    stem=f"As of {ctx.ref_s}, is the patient's {g.name} still active (not resolved)?",
                    gold_ids=_newest(ctx, [f.ref for f in g.facts if f.clinical in _ACTIVE], g.call())
                    if status
                    else g.refs,
                    calls=[g.call()],
                    params={"code": g.concept.code, "ref": ctx.ref_s},
                )
            )

    for a, b in _pairs(groups, ctx, "cond_before"):
        out.append(
            ctx.yes_no(
                answer=a.first < b.first,
                category=cat,
                qtype="cond_before",
                stem=f"Was {a.name} first recorded before {b.name}?",
                gold_ids=[*a.first_refs, *b.first_refs],
                calls=[a.call(), b.call()],
                params={"code_a": a.concept.code, "code_b": b.concept.code},
            )
        )
    for a, b in _pairs(groups, ctx, "cond_days_between"):
        out.append(
            ctx.make(
                category=cat,
                qtype="cond_days_between",
                kind="integer",
                stem=(
                    f"How many days passed between the first recorded onset of {a.name} "
                    f"and the first recorded onset of {b.name}?"
                ),
                answer=str(abs((b.first - a.first).days)),
                gold_ids=[*a.first_refs, *b.first_refs],
                calls=[a.call(), b.call()],
                params={"code_a": a.concept.code, "code_b": b.concept.code},
            )
        )
    return [q for q in out if q is not None]


def condition_existence_transitive(ctx: Context) -> list[Question]:
    """Any kind of X (through the is-a table): yes/no, which option, first diagnosis, how many kinds."""
    cat: Category = "condition_existence_transitive"
    if not snomed_coded_conditions(ctx):
        return []  # the is-a table is SNOMED CT: on other codes every question would be a "no"
    hierarchy = ctx.hierarchy
    groups = {g.concept.code: g for g in condition_groups(ctx)}
    present_codes = ctx.facts.codes.get("condition", set())
    names = [
        (f.concept.code, f.concept.display or "") for f in ctx.facts.conditions if f.concept is not None
    ] + [(code, "") for code in ctx.facts.tainted.get("condition", set())]
    out: list[Question | None] = []
    for group in hierarchy.groups():
        if group.code in present_codes:
            continue
        below = hierarchy.descendants(group.code)
        present_below = sorted(below & present_codes)
        members = [groups[c] for c in present_below if c in groups]
        complete = (
            hierarchy.complete_for(group, names)
            and len(members) == len(present_below)
            and not any(ctx.facts.is_tainted("condition", c) for c in below)
        )
        label = group.label
        stem = (
            f"Does the patient's condition list include any kind of {label} (a more specific entry counts)?"
            if group.display.endswith("(finding)")
            else f"Has the patient ever been diagnosed with any kind of {label} (a more specific diagnosis "
            "counts)?"
        )
        gold = [ref for m in members for ref in _newest(ctx, m.refs, m.call())]
        calls = [m.call() for m in members]
        absent_below = [
            Concept(SNOMED, c, hierarchy.display(c))
            for c in sorted(below)
            if not ctx.facts.mentions("condition", c, hierarchy.display(c))
        ]
        if members:
            out.append(
                ctx.yes_no(
                    answer=True,
                    category=cat,
                    qtype="trans_exists",
                    stem=stem,
                    gold_ids=gold,
                    calls=calls,
                    params={"group": group.code},
                )
            )
        elif complete and absent_below:
            out.append(
                ctx.yes_no(
                    answer=False,
                    category=cat,
                    qtype="trans_exists",
                    stem=stem,
                    gold_ids=[],
                    calls=[
                        GoldCall(resource_type="Condition", code=search_code(c), expect_absent=True)
                        for c in absent_below
                    ],
                    params={"group": group.code},
                    refusal_ok=True,
                )
            )
        if not members:
            continue
        rng = ctx.rng(f"trans_pick|{group.code}")
        correct = rng.choice(members)
        keywords = [norm_text(k) for k in group.keywords]
        others = [
            g
            for code, g in groups.items()
            if code not in below
            and not any(hierarchy.related(code, b) for b in [*below, group.code])
            and not any(k in norm_text(g.name) for k in keywords)
        ]
        wrong_absent = rng.sample(absent_below, min(2, len(absent_below)))
        wrong_present = rng.sample(others, min(3 - len(wrong_absent), len(others)))
        wrong = [c.name for c in wrong_absent if c.display] + [g.name for g in wrong_present]
        rng.shuffle(wrong)
        out.append(
            ctx.choice(
                rng,
                correct=correct.name,
                wrong=wrong,
                category=cat,
                qtype="trans_pick",
                stem=f"Which of these conditions recorded for the patient is a kind of {label}?",
                gold_ids=_newest(ctx, correct.refs, correct.call()),
                calls=[
                    correct.call(),
                    *(
                        GoldCall(resource_type="Condition", code=search_code(c), expect_absent=True)
                        for c in wrong_absent
                    ),
                ],
                params={"group": group.code, "code": correct.concept.code},
            )
        )
        if not complete:
            continue
        if all(m.dated for m in members):
            first = min(m.first for m in members)
            out.append(
                ctx.make(
                    category=cat,
                    qtype="trans_first",
                    kind="date",
                    stem=f"On what date was the patient first diagnosed with any kind of {label}?",
                    answer=day(first),
                    gold_ids=[ref for m in members if m.first == first for ref in m.first_refs],
                    calls=[m.call() for m in members if m.first == first]
                    + [m.call() for m in members if m.first != first],
                    params={"group": group.code},
                )
            )
        out.append(
            ctx.make(
                category=cat,
                qtype="trans_count",
                kind="integer",
                stem=f"How many different kinds of {label} (distinct diagnoses) are recorded for the "
                "patient?",
                answer=str(len(members)),
                gold_ids=gold,
                calls=calls,
                params={"group": group.code},
            )
        )
    return [q for q in out if q is not None]
