"""Generate EHRQA questions from patient records: all ten categories, balanced, deterministic per seed.

For each patient every category's builder proposes candidates; up to `per_patient` are kept, an equal
share per category (unused shares go to categories with more candidates), spread over question types
and, for yes/no types, over both answers. Patients are split into train/val/test by a seeded shuffle.
Questions about one patient also draw wrong options from the other patients' records of the same run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from clinicflow.evals.ehrqa.categories import BUILDERS, Context, Corpus
from clinicflow.evals.ehrqa.categories.conditions import snomed_coded_conditions
from clinicflow.evals.ehrqa.facts import Concept, PatientFacts, extract_facts, person_name
from clinicflow.evals.ehrqa.questions import CATEGORIES, Category, Question, Split
from clinicflow.evals.ehrqa.records import PatientRecord, RecordSet, read_records
from clinicflow.evals.ehrqa.terminology import load_hierarchy

__all__ = [
    "DEFAULT_PER_PATIENT",
    "DEFAULT_SPLIT",
    "assign_splits",
    "build_corpus",
    "check_answer_balance",
    "generate_from_path",
    "generate_questions",
    "interleave",
]

DEFAULT_PER_PATIENT = 200
DEFAULT_SPLIT = (0.5, 0.25, 0.25)
"""Train / val / test fractions of patients (the report used 42 / 20 / 19 patients)."""

_SPLITS: tuple[Split, ...] = ("train", "val", "test")
MIN_FOR_BALANCE = 4
"""A category with at least this many questions must have more than one answer."""

log = logging.getLogger(__name__)


def check_answer_balance(questions: Sequence[Question]) -> tuple[list[Question], list[str]]:
    """The questions without any category whose every answer is the same (a constant reply would score
    100% on it), and a note naming each category dropped."""
    answers: dict[str, Counter[str]] = {}
    for q in questions:
        answers.setdefault(q.category, Counter())[q.answer] += 1
    constant = {
        category: next(iter(counts))
        for category, counts in answers.items()
        if len(counts) == 1 and sum(counts.values()) >= MIN_FOR_BALANCE
    }
    notes = [
        f"{category}: dropped, all {answers[category].total()} questions have the answer {answer!r}"
        for category, answer in sorted(constant.items())
    ]
    return [q for q in questions if q.category not in constant], notes


def build_corpus(facts: Iterable[PatientFacts]) -> Corpus:
    """Named, untainted concepts, practitioner names and coded values seen across all records."""
    concepts: dict[str, dict[str, Concept]] = {"condition": {}, "medication": {}, "vaccine": {}}
    coded: dict[str, dict[str, Concept]] = {}
    people: set[str] = set()
    shared_seen: set[int] = set()
    for f in facts:
        for family, items in (
            ("condition", f.conditions),
            ("medication", f.medications),
            ("vaccine", f.immunizations),
        ):
            for item in items:
                c = item.concept
                if c is not None and c.display and not f.is_tainted(family, c.code):
                    concepts[family].setdefault(c.code, c)
        for m in f.measurements:
            if m.coded is not None and m.coded.display:
                coded.setdefault(m.concept.code, {}).setdefault(m.coded.code, m.coded)
        people.update(p.prescriber for p in f.medications if p.prescriber)
        if id(f.record.shared) not in shared_seen:
            shared_seen.add(id(f.record.shared))
            for key, resource in f.record.shared.items():
                if key.startswith("Practitioner/") and (name := person_name(resource)):
                    people.add(name)
    return Corpus(
        concepts={k: sorted(v.values(), key=lambda c: c.code) for k, v in concepts.items()},
        practitioners=sorted(people),
        coded_values={k: sorted(v.values(), key=lambda c: c.code) for k, v in coded.items()},
    )


def assign_splits(
    patient_ids: Sequence[str], seed: int, fractions: Sequence[float] = DEFAULT_SPLIT
) -> dict[str, Split]:
    """Patients to train/val/test by a seeded shuffle; with 3 or more patients every split gets one."""
    ids = sorted(patient_ids)
    random.Random(f"split|{seed}").shuffle(ids)
    n = len(ids)
    total = sum(fractions)
    raw = [n * f / total for f in fractions]
    counts = [int(r) for r in raw]
    for i in sorted(range(3), key=lambda i: raw[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    if n >= 3:
        for i in range(3):
            if counts[i] == 0:
                donor = max(range(3), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    out: dict[str, Split] = {}
    start = 0
    for split, count in zip(_SPLITS, counts, strict=True):
        for pid in ids[start : start + count]:
            out[pid] = split
        start += count
    return out


def _spread(questions: Sequence[Question], rng: random.Random) -> list[Question]:
    """Order one category's candidates round-robin over (type, yes/no answer) buckets, each shuffled."""
    buckets: dict[tuple[str, str], list[Question]] = {}
    for q in questions:
        buckets.setdefault((q.qtype, q.answer if q.kind == "yes_no" else ""), []).append(q)
    keys = sorted(buckets)
    rng.shuffle(keys)
    for key in keys:
        rng.shuffle(buckets[key])
    out: list[Question] = []
    while any(buckets[k] for k in keys):
        for key in keys:
            if buckets[key]:
                out.append(buckets[key].pop())
    return out


def interleave(groups: Mapping[str, Sequence[Question]]) -> list[Question]:
    """Round-robin over groups in key order, so any prefix covers every group."""
    queues = [list(groups[k]) for k in sorted(groups)]
    out: list[Question] = []
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out


def _select(
    candidates: Mapping[Category, list[Question]], per_patient: int, rng: random.Random
) -> list[Question]:
    seen: set[str] = set()
    ordered: dict[str, list[Question]] = {}
    for category in CATEGORIES:
        unique = []
        for q in candidates.get(category, []):
            if q.id not in seen and q.text not in seen:
                seen.update((q.id, q.text))
                unique.append(q)
        ordered[category] = _spread(unique, rng)
    taken: dict[str, list[Question]] = {c: [] for c in CATEGORIES}
    budget = per_patient
    while budget > 0 and any(ordered[c] for c in CATEGORIES):
        open_categories = [c for c in CATEGORIES if ordered[c]]
        share = max(1, budget // len(open_categories))
        for category in open_categories:
            n = min(share, len(ordered[category]), budget)
            taken[category] += ordered[category][:n]
            ordered[category] = ordered[category][n:]
            budget -= n
            if budget == 0:
                break
    return interleave({f"{CATEGORIES.index(c):02d}": qs for c, qs in taken.items()})  # type: ignore[arg-type]


def generate_questions(
    records: RecordSet | Sequence[PatientRecord],
    *,
    seed: int = 0,
    per_patient: int = DEFAULT_PER_PATIENT,
    reference_date: dt.date | None = None,
    token_budget: int = 1200,
    split: Sequence[float] = DEFAULT_SPLIT,
    notes: list[str] | None = None,
) -> list[Question]:
    """Questions for every patient, in patient order; each patient's list is interleaved by category.

    `reference_date` is the day "current" and "as of" questions refer to; by default each patient's
    latest recorded day. `token_budget` is the search tool's output budget that gold evidence must fit.
    What was skipped or dropped, and why, is appended to `notes` when given (else logged as warnings):
    categories whose answers would all be the same (see `check_answer_balance`), and the transitive
    condition questions of patients whose conditions are not SNOMED CT coded.
    """
    if per_patient < 1:
        raise ValueError(f"per_patient must be at least 1, got {per_patient}")
    facts = [extract_facts(r) for r in records]
    corpus = build_corpus(facts)
    hierarchy = load_hierarchy()
    splits = assign_splits([f.patient_id for f in facts], seed, split)
    out: list[Question] = []
    said: list[str] = []
    not_snomed = 0
    for f in facts:
        ctx = Context(
            f, corpus, hierarchy, seed=seed, reference_date=reference_date, token_budget=token_budget
        )
        not_snomed += bool(f.conditions) and not snomed_coded_conditions(ctx)
        candidates = {category: builder(ctx) for category, builder in BUILDERS.items()}
        digest = hashlib.sha256(f"select|{seed}|{f.patient_id}".encode()).digest()
        chosen = _select(candidates, per_patient, random.Random(int.from_bytes(digest[:8], "big")))
        out += [q.model_copy(update={"split": splits[f.patient_id]}) for q in chosen]
    if not_snomed:
        said.append(
            f"condition_existence_transitive: skipped for {not_snomed} of {len(facts)} patients, whose "
            "conditions are not SNOMED CT coded (the is-a table is SNOMED CT only)"
        )
    out, dropped = check_answer_balance(out)
    said += dropped
    if notes is not None:
        notes += said
    else:
        for note in said:
            log.warning("EHRQA questions: %s", note)
    return out


def generate_from_path(path: Path | str, **kwargs: object) -> list[Question]:
    """Read a folder of FHIR files and generate questions (see `generate_questions` for the options)."""
    return generate_questions(read_records(path), **kwargs)  # type: ignore[arg-type]
