"""What every category builder shares: the per-patient context, question assembly and retrievability.

A question is kept only when each of its gold resources would show up in the output of one of its gold
calls, judged by replaying the search tool's filtering, newest-first ordering, line limit and token
budget over the record (ties in date count against the gold resource). A call that does not show its
gold resources is narrowed to their date span once; if that does not help, the question is dropped.
The oracle retrieval check then confirms this against the real tools.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from clinicflow.evals.ehrqa.facts import Concept, PatientFacts, core_name, norm_text
from clinicflow.evals.ehrqa.questions import AnswerKind, Category, GoldCall, Question
from clinicflow.evals.ehrqa.terminology import Hierarchy
from clinicflow.tools.fhir_tools.matching import contains_words
from clinicflow.tools.fhir_tools.query import SEARCH_PARAMS
from clinicflow.tools.manifest import concept_names, resource_codings
from clinicflow.tools.render import estimate_tokens, render_resource, resource_date

__all__ = [
    "INSTRUCTIONS",
    "Builder",
    "Context",
    "Corpus",
    "ToolView",
    "day",
    "fmt_number",
    "search_code",
    "tolerance_of",
]

INSTRUCTIONS: dict[str, str] = {
    "yes_no": "Answer yes or no.",
    "choice": "Answer with the letter of the correct option.",
    "date": "Answer with the date (YYYY-MM-DD).",
    "number": "Answer with the number and its unit.",
    "integer": "Answer with a whole number.",
    "text": "Answer with the name of the condition.",
    "name": "Answer with the clinician's name.",
}
LETTERS = "ABCD"
_SEARCHABLE = ("Condition", "MedicationRequest", "Immunization", "Observation")
_HEADER_TOKENS = 45
_REFERENCE_TOKENS = {"MedicationRequest": 20}


def day(value: dt.date) -> str:
    """ISO form of a day."""
    return value.isoformat()


def fmt_number(value: float) -> str:
    """A value rounded to at most 2 decimals, without trailing zeros ('7.90' -> '7.9', '72.0' -> '72')."""
    text = f"{round(value, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def tolerance_of(text: str) -> float:
    """Half a unit of the last decimal shown: '7.9' -> 0.05, '72' -> 0.5."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10**-decimals + 1e-9


def search_code(concept: Concept) -> str:
    """The code argument a planner passes: a bare code when it has a digit, else `system|code`."""
    if any(ch.isdigit() for ch in concept.code):
        return concept.code
    return f"{concept.system}|{concept.code}"


class CodedFact(Protocol):
    """A fact of the record: its concept (None when uncoded) and every name it carries."""

    @property
    def concept(self) -> Concept | None: ...

    @property
    def names(self) -> frozenset[str]: ...


class CodeGroup(Protocol):
    """The facts of one code, as a builder groups them."""

    @property
    def concept(self) -> Concept: ...

    @property
    def name(self) -> str: ...


FactT = TypeVar("FactT", bound=CodedFact)
GroupT = TypeVar("GroupT", bound=CodeGroup)


@dataclass(frozen=True)
class _Row:
    key: str
    day: str
    codes: frozenset[tuple[str, str]]
    displays: str
    cost: int


@dataclass(frozen=True)
class _Coded:
    """A resource of a code-searchable type as the tool's redirect sees it: its day, exact names, displays."""

    day: str
    names: frozenset[str]
    displays: str

    @classmethod
    def of(cls, resource: Mapping[str, Any]) -> _Coded:
        codings = resource_codings(resource)
        names = frozenset(n for c in codings for n in concept_names(c))
        displays = " ".join(str(c.get("display") or "") for c in codings)
        return cls((resource_date(resource) or "")[:10], names, displays)


def _in_dates(day: str, call: GoldCall) -> bool:
    """Whether a resource of `day` ("" when undated) lies in the call's dates, as the tool filters them."""
    if not (call.date_from or call.date_to):
        return True
    return bool(day) and (call.date_from or "") <= day <= (call.date_to or "9999")


class ToolView:
    """Replays what `search_record` would show for a call over one patient's record."""

    def __init__(self, resources: Iterable[Mapping[str, Any]], *, token_budget: int = 1200, limit: int = 25):
        self.token_budget = token_budget
        self.limit = limit
        self.rows: dict[str, list[_Row]] = {}
        self.coded: dict[str, list[_Coded]] = {}
        self._shown: dict[GoldCall, set[str]] = {}
        for r in resources:
            rtype = str(r.get("resourceType"))
            params = SEARCH_PARAMS.get(rtype)
            if params is not None and params.code:
                self.coded.setdefault(rtype, []).append(_Coded.of(r))
            if rtype not in _SEARCHABLE:
                continue
            codings = resource_codings(r)
            codes = frozenset((str(c.get("system") or ""), str(c.get("code"))) for c in codings)
            displays = " ".join(str(c.get("display") or "") for c in codings)
            cost = estimate_tokens(render_resource(r)) + 1 + _REFERENCE_TOKENS.get(rtype, 0)
            row = _Row(f"{rtype}/{r.get('id')}", (resource_date(r) or "")[:10], codes, displays, cost)
            self.rows.setdefault(rtype, []).append(row)

    def _code_matches(self, row: _Row, code: str | None) -> bool:
        if code is None:
            return True
        system, sep, value = code.rpartition("|")
        if sep:
            return (system, value) in row.codes
        return any(c == value for _, c in row.codes)

    def matches(self, call: GoldCall) -> list[_Row]:
        """Rows the call matches, newest first."""
        rows = [
            r
            for r in self.rows.get(call.resource_type, [])
            if self._code_matches(r, call.code) and _in_dates(r.day, call)
        ]
        return sorted(rows, key=lambda r: r.day, reverse=True)

    def shown(self, call: GoldCall) -> set[str]:
        """Keys the tool surely lists for this call, whatever order rows of equal date come back in."""
        if call not in self._shown:
            rows = self.matches(call)
            shown: set[str] = set()
            for row in rows:
                ahead = [r for r in rows if r.day >= row.day]
                cost = sum(r.cost for r in ahead) + _HEADER_TOKENS
                if len(ahead) <= self.limit and cost <= self.token_budget:
                    shown.add(row.key)
            self._shown[call] = shown
        return self._shown[call]

    def absent(self, call: GoldCall) -> bool:
        """Whether the tool would answer 'not found' (its fallback by display words included)."""
        if self.matches(call):
            return False
        code = (call.code or "").rpartition("|")[2].casefold()
        if any(code in r.displays.casefold() for r in self.rows.get(call.resource_type, [])):
            return False
        return not self._redirected(call)

    def _redirected(self, call: GoldCall) -> bool:
        """Whether the tool would list the call's concept under the one other type that holds it
        (`RecordReader._type_holding_concept`), in the call's dates."""
        if not call.code or "|" in call.code:
            return False
        wanted = " ".join(call.code.casefold().split())
        holders = [
            t
            for t, rows in self.coded.items()
            if t != call.resource_type and any(wanted in r.names for r in rows)
        ]
        if len(holders) != 1:
            return False
        return any(
            (wanted in r.names or contains_words(r.displays, wanted)) and _in_dates(r.day, call)
            for r in self.coded[holders[0]]
        )


@dataclass
class Corpus:
    """Concepts and names seen across all records of a run, used for wrong options."""

    concepts: dict[str, list[Concept]] = field(default_factory=dict)
    practitioners: list[str] = field(default_factory=list)
    coded_values: dict[str, list[Concept]] = field(default_factory=dict)


class Context:
    """Per-patient inputs of the builders: facts, reference day, corpus, hierarchy, tool view, seeds."""

    def __init__(
        self,
        facts: PatientFacts,
        corpus: Corpus,
        hierarchy: Hierarchy,
        *,
        seed: int,
        reference_date: dt.date | None,
        token_budget: int = 1200,
    ) -> None:
        self.facts = facts
        self.corpus = corpus
        self.hierarchy = hierarchy
        self.seed = seed
        self.ref = reference_date or facts.latest_day or dt.date.today()
        self.view = ToolView(facts.record.resources, token_budget=token_budget)

    @property
    def patient_id(self) -> str:
        return self.facts.patient_id

    @property
    def ref_s(self) -> str:
        return self.ref.isoformat()

    def rng(self, qtype: str) -> random.Random:
        """A generator seeded by (seed, patient, question type), so builders never shift each other."""
        digest = hashlib.sha256(f"{self.seed}|{self.patient_id}|{qtype}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def absent_concepts(
        self,
        family: str,
        pool: Sequence[Concept],
        *,
        related: Callable[[Concept], bool] | None = None,
    ) -> list[Concept]:
        """Concepts of the pool the patient's record holds in no form, by code, name or word overlap."""
        present = self.facts.names.get(family, set())
        out: list[Concept] = []
        seen: set[str] = set()
        for concept in pool:
            if not concept.display or concept.code in seen:
                continue
            name = norm_text(core_name(concept.display))
            if self.facts.mentions(family, concept.code, concept.display) or not name:
                continue
            words = set(name.split())
            if any(words <= set(p.split()) or set(p.split()) <= words for p in present):
                continue
            if related is not None and related(concept):
                continue
            seen.add(concept.code)
            out.append(concept)
        return out

    def code_groups(
        self, family: str, facts: Iterable[FactT], group: Callable[[Concept, list[FactT]], GroupT]
    ) -> list[GroupT]:
        """Facts grouped by code, sorted by name: only codes with a display that no other code shares,
        none tainted in `family`."""
        by_code: dict[str, list[FactT]] = {}
        name_codes: dict[str, set[str]] = {}
        for fact in facts:
            if fact.concept is None:
                continue
            by_code.setdefault(fact.concept.code, []).append(fact)
            for name in fact.names:
                name_codes.setdefault(name, set()).add(fact.concept.code)
        groups = []
        for code, members in by_code.items():
            concept = members[0].concept
            assert concept is not None
            if not concept.display or self.facts.is_tainted(family, code):
                continue
            if any(len(name_codes.get(n, set())) > 1 for n in members[0].names):
                continue
            groups.append(group(concept, members))
        return sorted(groups, key=lambda g: (g.name.casefold(), g.concept.code))

    def _visible(self, gold_ids: Sequence[str], calls: list[GoldCall]) -> list[GoldCall] | None:
        calls = list(calls)
        if any(call.expect_absent and not self.view.absent(call) for call in calls):
            return None
        for gold in gold_ids:
            if gold.split("/")[0] not in _SEARCHABLE:
                continue
            if any(gold in self.view.shown(c) for c in calls if not c.expect_absent):
                continue
            for i, call in enumerate(calls):
                matched = {r.key: r.day for r in self.view.matches(call)} if not call.expect_absent else {}
                if gold not in matched:
                    continue
                days = sorted(d for g, d in matched.items() if g in gold_ids and d)
                if not days:
                    continue
                narrowed = call.model_copy(update={"date_from": days[0], "date_to": days[-1]})
                if gold in self.view.shown(narrowed):
                    calls[i] = narrowed
                    break
            else:
                return None
        return calls

    def make(
        self,
        *,
        category: Category,
        qtype: str,
        kind: AnswerKind,
        stem: str,
        answer: str,
        gold_ids: Sequence[str],
        calls: Sequence[GoldCall],
        params: Mapping[str, Any],
        answer_text: str | None = None,
        options: Sequence[str] = (),
        support_ids: Sequence[str] = (),
        refusal_ok: bool = False,
        tolerance: float | None = None,
        unit: str = "",
    ) -> Question | None:
        """Assemble a question, or None when its gold resources would not show in its calls' output."""
        checked = self._visible(list(dict.fromkeys(gold_ids)), list(calls))
        if checked is None:
            return None
        instruction = INSTRUCTIONS[kind]
        if kind == "number" and not unit:
            instruction = "Answer with the number."
        text = stem
        if options:
            text += "\n" + "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options))
        text += "\n" + instruction
        key = json.dumps({"qtype": qtype, **params}, sort_keys=True, default=str)
        qid = "q" + hashlib.sha256(f"{self.patient_id}|{key}".encode()).hexdigest()[:15]
        form = {"yes_no": "yes_no", "choice": "multiple_choice"}.get(kind, "short_answer")
        return Question(
            id=qid,
            patient_id=self.patient_id,
            category=category,
            qtype=qtype,
            form=form,  # type: ignore[arg-type]
            kind=kind,
            text=text,
            options=list(options),
            answer=answer,
            answer_text=answer_text or answer,
            tolerance=tolerance,
            refusal_ok=refusal_ok,
            gold_ids=list(dict.fromkeys(gold_ids)),
            support_ids=list(dict.fromkeys(s for s in support_ids if s not in gold_ids)),
            gold_calls=checked,
            reference_date=self.ref_s,
            params=dict(params),
        )

    def choice(
        self,
        rng: random.Random,
        *,
        correct: str,
        wrong: Sequence[str],
        **kwargs: Any,
    ) -> Question | None:
        """A multiple-choice question: the correct option and up to three wrong ones, in shuffled order."""
        seen = {norm_text(correct)}
        picked: list[str] = []
        for option in wrong:
            if norm_text(option) not in seen:
                seen.add(norm_text(option))
                picked.append(option)
            if len(picked) == len(LETTERS) - 1:
                break
        if len(picked) < 2:
            return None
        options = [correct, *picked]
        rng.shuffle(options)
        letter = LETTERS[options.index(correct)]
        params = {**kwargs.pop("params"), "options": options}
        return self.make(
            kind="choice",
            answer=letter,
            answer_text=f"{letter}. {correct}",
            options=options,
            params=params,
            **kwargs,
        )

    def yes_no(self, *, answer: bool, **kwargs: Any) -> Question | None:
        """A yes/no question."""
        params = {**kwargs.pop("params"), "answer": answer}
        return self.make(kind="yes_no", answer="yes" if answer else "no", params=params, **kwargs)


Builder = Callable[[Context], list[Question]]
"""A category's question builder: every candidate question of that category for one patient."""
