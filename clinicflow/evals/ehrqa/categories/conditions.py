"""Condition questions: existence, onset, counts, order and status; and existence through the is-a table."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from clinicflow.evals.ehrqa.categories.ask import Ask, kept
from clinicflow.evals.ehrqa.categories.base import Context, day, search_code
from clinicflow.evals.ehrqa.categories.groups import FactGroup
from clinicflow.evals.ehrqa.facts import (
    ACTIVE_CLINICAL,
    RESOLVED_CLINICAL,
    SNOMED,
    Concept,
    ConditionFact,
    norm_text,
)
from clinicflow.evals.ehrqa.questions import GoldCall, Question
from clinicflow.evals.ehrqa.terminology import distractor_concepts

__all__ = [
    "CondGroup",
    "condition_existence",
    "condition_existence_transitive",
    "condition_groups",
    "snomed_coded_conditions",
]

_MAX_PAIRS = 40


class CondGroup(FactGroup[ConditionFact]):
    """All usable Condition entries with one code, each on its onset day."""

    def day_of(self, fact: ConditionFact) -> dt.date | None:
        return fact.onset

    @property
    def first(self) -> dt.date:
        return self.days()[0]

    @property
    def first_refs(self) -> list[str]:
        return self.refs_on(self.first)

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
        if fact.clinical in ACTIVE_CLINICAL and not ended:
            if fact.abated is not None:
                return None
            active = True
        elif not ended and fact.clinical not in RESOLVED_CLINICAL:
            return None
    return active


def _absent_call(concept: Concept) -> GoldCall:
    return GoldCall(resource_type="Condition", code=search_code(concept), expect_absent=True)


def condition_existence(ctx: Context) -> list[Question]:
    """Was X ever diagnosed (yes/no, multiple choice), first onset, count, order, days between, status."""
    ask = Ask(ctx, "condition_existence")
    groups = condition_groups(ctx)
    absent = _absent(ctx)
    return kept(
        [
            *_ever(ask, groups, absent),
            *_pick(ask, groups, absent),
            *(q for g in groups for q in _about_group(ask, g)),
            *_ordered(ask, groups),
        ]
    )


def _ever(ask: Ask, groups: Sequence[CondGroup], absent: Sequence[Concept]) -> list[Question | None]:
    ctx = ask.ctx
    out = [
        ask.about(_newest(ctx, g.refs, g.call()), [g.call()], {"code": g.concept.code}).yes_no(
            "cond_exists", f"Has the patient ever {_diagnosed(g.concept)}?", True
        )
        for g in groups
    ]
    negatives = list(absent)
    ctx.rng("cond_exists").shuffle(negatives)
    for c in negatives[: max(3, len(groups))]:
        stem = f"Has the patient ever {_diagnosed(c)}?"
        out.append(ask.absent("cond_exists", stem, [_absent_call(c)], {"code": c.code}))
    return out


def _pick(ask: Ask, groups: Sequence[CondGroup], absent: Sequence[Concept]) -> list[Question | None]:
    rng = ask.ctx.rng("cond_pick")
    out = []
    for g in groups:
        wrong = rng.sample(list(absent), min(3, len(absent)))
        gold = _newest(ask.ctx, g.refs, g.call())
        params = {"code": g.concept.code, "wrong_codes": [c.code for c in wrong]}
        subject = ask.about(gold, [g.call(), *(_absent_call(c) for c in wrong)], params)
        stem = "Which of these conditions is recorded in the patient's record?"
        out.append(subject.choice(rng, "cond_pick", stem, g.name, [c.name for c in wrong]))
    return out


def _about_group(ask: Ask, g: CondGroup) -> list[Question | None]:
    """First onset, number of entries, and whether it is still active on the reference day."""
    ctx = ask.ctx
    subject = ask.about(g.refs, [g.call()], {"code": g.concept.code})
    out = []
    if g.dated:
        stem = f"On what date was {g.name} first recorded for the patient (its onset date)?"
        out.append(subject.value("cond_first_onset", "date", stem, day(g.first), gold_ids=g.first_refs))
    stem = f"How many separate entries for {g.name} does the patient's condition list hold?"
    out.append(subject.value("cond_count", "integer", stem, str(len(g.facts))))
    status = _status(g, ctx.ref)
    if status is not None:
        active = _newest(ctx, [f.ref for f in g.facts if f.clinical in ACTIVE_CLINICAL], g.call())
        stem = f"As of {ctx.ref_s}, is the patient's {g.name} still active (not resolved)?"
        gold = active if status else g.refs
        out.append(subject.plus(ref=ctx.ref_s).yes_no("cond_active", stem, status, gold_ids=gold))
    return out


def _ordered(ask: Ask, groups: Sequence[CondGroup]) -> list[Question | None]:
    """Which of two conditions came first, and the days between their first onsets."""
    out = []
    for a, b in _pairs(groups, ask.ctx, "cond_before"):
        subject = _pair(ask, a, b)
        out.append(
            subject.yes_no("cond_before", f"Was {a.name} first recorded before {b.name}?", a.first < b.first)
        )
    for a, b in _pairs(groups, ask.ctx, "cond_days_between"):
        stem = (
            f"How many days passed between the first recorded onset of {a.name} "
            f"and the first recorded onset of {b.name}?"
        )
        answer = str(abs((b.first - a.first).days))
        out.append(_pair(ask, a, b).value("cond_days_between", "integer", stem, answer))
    return out


def _pair(ask: Ask, a: CondGroup, b: CondGroup) -> Ask:
    params = {"code_a": a.concept.code, "code_b": b.concept.code}
    return ask.about([*a.first_refs, *b.first_refs], [a.call(), b.call()], params)


@dataclass
class _Kind:
    """One is-a group as the patient's record holds it."""

    code: str
    label: str
    stem: str
    keywords: list[str]
    below: set[str]
    members: list[CondGroup]
    complete: bool
    absent_below: list[Concept]


def _kinds(ctx: Context) -> list[_Kind]:
    """The is-a groups whose own code the patient's record lacks, with what it holds below each."""
    hierarchy = ctx.hierarchy
    groups = {g.concept.code: g for g in condition_groups(ctx)}
    present_codes = ctx.facts.codes.get("condition", set())
    names = [
        (f.concept.code, f.concept.display or "") for f in ctx.facts.conditions if f.concept is not None
    ] + [(code, "") for code in ctx.facts.tainted.get("condition", set())]
    out = []
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
        absent_below = [
            Concept(SNOMED, c, hierarchy.display(c))
            for c in sorted(below)
            if not ctx.facts.mentions("condition", c, hierarchy.display(c))
        ]
        keywords = [norm_text(k) for k in group.keywords]
        out.append(_Kind(group.code, label, stem, keywords, below, members, complete, absent_below))
    return out


def condition_existence_transitive(ctx: Context) -> list[Question]:
    """Any kind of X (through the is-a table): yes/no, which option, first diagnosis, how many kinds."""
    if not snomed_coded_conditions(ctx):
        return []  # the is-a table is SNOMED CT: on other codes every question would be a "no"
    ask = Ask(ctx, "condition_existence_transitive")
    groups = condition_groups(ctx)
    out: list[Question | None] = []
    for kind in _kinds(ctx):
        gold = [ref for m in kind.members for ref in _newest(ctx, m.refs, m.call())]
        subject = ask.about(gold, [m.call() for m in kind.members], {"group": kind.code})
        if kind.members:
            out.append(subject.yes_no("trans_exists", kind.stem, True))
        elif kind.complete and kind.absent_below:
            calls = [_absent_call(c) for c in kind.absent_below]
            out.append(ask.absent("trans_exists", kind.stem, calls, {"group": kind.code}))
        if not kind.members:
            continue
        out.append(_kind_pick(ask, kind, groups))
        if kind.complete:
            out += _kind_counts(subject, kind)
    return kept(out)


def _kind_pick(ask: Ask, kind: _Kind, groups: Sequence[CondGroup]) -> Question | None:
    """Which of these recorded conditions is a kind of X: wrong options lie outside the group."""
    hierarchy = ask.ctx.hierarchy
    rng = ask.ctx.rng(f"trans_pick|{kind.code}")
    correct = rng.choice(kind.members)
    others = [
        g
        for g in groups
        if g.concept.code not in kind.below
        and not any(hierarchy.related(g.concept.code, b) for b in [*kind.below, kind.code])
        and not any(k in norm_text(g.name) for k in kind.keywords)
    ]
    wrong_absent = rng.sample(kind.absent_below, min(2, len(kind.absent_below)))
    wrong_present = rng.sample(others, min(3 - len(wrong_absent), len(others)))
    wrong = [c.name for c in wrong_absent if c.display] + [g.name for g in wrong_present]
    rng.shuffle(wrong)
    gold = _newest(ask.ctx, correct.refs, correct.call())
    calls = [correct.call(), *(_absent_call(c) for c in wrong_absent)]
    subject = ask.about(gold, calls, {"group": kind.code, "code": correct.concept.code})
    stem = f"Which of these conditions recorded for the patient is a kind of {kind.label}?"
    return subject.choice(rng, "trans_pick", stem, correct.name, wrong)


def _kind_counts(subject: Ask, kind: _Kind) -> list[Question | None]:
    """The first diagnosis of any kind of X, and how many kinds are recorded."""
    out = []
    members = kind.members
    if all(m.dated for m in members):
        first = min(m.first for m in members)
        gold = [ref for m in members if m.first == first for ref in m.first_refs]
        calls = [m.call() for m in members if m.first == first] + [
            m.call() for m in members if m.first != first
        ]
        stem = f"On what date was the patient first diagnosed with any kind of {kind.label}?"
        out.append(subject.value("trans_first", "date", stem, day(first), gold_ids=gold, calls=calls))
    stem = f"How many different kinds of {kind.label} (distinct diagnoses) are recorded for the patient?"
    out.append(subject.value("trans_count", "integer", stem, str(len(members))))
    return out
