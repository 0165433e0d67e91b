"""Evidence recall over the MedGemma report's ten EHRQA question categories, on the demo cohort.

Questions and their answers are computed from the cohort's bundles, read as JSON, with no tool code
involved; each answer names the resource(s) it rests on. The FHIR tools are then called with the
arguments a competent planner would pass (a resource type with a code from the record, a date range, or
words of a display), and every answer's facts must appear on a returned line that cites that resource.

Where the PySynthea cohort cannot carry a category as the report phrases it, the closest honest variant
is used:
- condition existence (transitive): the cohort has no SNOMED hierarchy, so `SNOMED_IS_A` below, a small
  hand-written is-a table (child concept -> ancestor display), stands in for it. The planner reads the
  Condition codes from the record manifest, keeps those the table maps to the asked ancestor, and searches
  each; the answer is the newest such Condition.
- medication prescriber: PySynthea writes no `MedicationRequest.requester`, so the prescriber is the
  primary performer of the encounter the request was written in (the tools label it "encounter
  performer"); a requester, where present, is used first.
- medication current: "current" means `MedicationRequest.status == active`, as in Synthea.
- observation (dependent): an observation value at the visit where a condition was diagnosed; the second
  search's date is read from the first search's returned line (its "diagnosed at visit" date, since
  PySynthea puts a condition's onset days before the diagnosing visit), not from the bundle.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool

from clinicflow.fhir import FhirClient
from clinicflow.tools import make_fhir_tools

from .bundles import PatientBundle, day, first_coding, load_cohort

pytestmark = pytest.mark.integration

CATEGORIES = (
    "condition existence",
    "condition existence (transitive)",
    "immunization date",
    "medication current",
    "medication existence",
    "medication prescriber",
    "medication prescription date",
    "medication for condition",
    "observation (dependent)",
    "observation value",
)
ABSENT = "condition existence (absent)"

SNOMED = "http://snomed.info/sct"
SNOMED_IS_A: dict[str, str] = {
    "125605004": "Fracture of bone",  # Fracture of bone (the ancestor itself)
    "16114001": "Fracture of bone",  # Fracture of ankle
    "65966004": "Fracture of bone",  # Fracture of forearm
    "58150001": "Fracture of bone",  # Fracture of clavicle
    "33737001": "Fracture of bone",  # Fracture of rib
    "263102004": "Fracture of bone",  # Fracture subluxation of wrist
    "444814009": "Sinusitis",  # Viral sinusitis
    "75498004": "Sinusitis",  # Acute bacterial sinusitis
    "40055000": "Sinusitis",  # Chronic sinusitis
    "195662009": "Pharyngitis",  # Acute viral pharyngitis
    "43878008": "Pharyngitis",  # Streptococcal sore throat
    "10509002": "Bronchitis",  # Acute bronchitis
    "66383009": "Gingival disease",  # Gingivitis
    "18718003": "Gingival disease",  # Gingival disease (the ancestor itself)
    "283371005": "Laceration",  # Laceration of forearm
    "284551006": "Laceration",  # Laceration of foot
    "370247008": "Laceration",  # Facial laceration
    "312608009": "Laceration",  # Laceration - injury (the ancestor itself)
    "62106007": "Concussion injury of brain",  # Concussion with no loss of consciousness
    "110030002": "Concussion injury of brain",  # Concussion injury of brain (the ancestor itself)
    "39848009": "Injury of neck",  # Whiplash injury to neck
    "90460009": "Injury of neck",  # Injury of neck (the ancestor itself)
    "65363002": "Disorder of middle ear",  # Otitis media
    "233604007": "Disorder of respiratory system",  # Pneumonia
    "446096008": "Allergic rhinitis",  # Perennial allergic rhinitis
    "232353008": "Allergic rhinitis",  # Perennial allergic rhinitis with seasonal variation
    "109570002": "Dental caries",  # Primary dental caries
    "44054006": "Diabetes mellitus",  # Diabetes mellitus type 2
    "59621000": "Hypertensive disorder",  # Essential hypertension
    "55822004": "Disorder of lipid metabolism",  # Hyperlipidemia
    "302870006": "Disorder of lipid metabolism",  # Hypertriglyceridemia
}
PREFERRED_VITALS = ("29463-7", "8302-2", "8867-4", "9279-1", "39156-5")
PER_PATIENT = 2
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_FROM_PREVIOUS = "<date of the previous line>"
_VISIT = re.compile(r"diagnosed at visit (\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class Answer:
    """One acceptable answer: the resource it rests on and the facts its line must show."""

    citation: str
    facts: tuple[str | float, ...]


@dataclass
class Step:
    """One search_record call and the answers (any one suffices) its output must contain."""

    args: dict[str, Any]
    answers: list[Answer]


@dataclass
class Question:
    category: str
    patient_id: str
    text: str
    steps: list[Step] = field(default_factory=list)
    ancestor: str | None = None
    absent: bool = False


# -- answers from the bundles ----------------------------------------------------------------------


def _key(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _token(concept: Any) -> str:
    coding = first_coding(concept)
    return f"{coding['system']}|{coding['code']}"


def _display(concept: Any) -> str:
    return str(first_coding(concept).get("display"))


def _newest(resources: list[dict[str, Any]], when: str) -> list[dict[str, Any]]:
    """The resources sharing the newest date (ties are all acceptable evidence)."""
    latest = max(day(r.get(when)) for r in resources)
    return [r for r in resources if day(r.get(when)) == latest]


def _grouped(resources: list[dict[str, Any]], path: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in resources:
        groups[str(first_coding(resource.get(path)).get("code"))].append(resource)
    return dict(sorted(groups.items()))


def _quantity_facts(observation: dict[str, Any]) -> tuple[float, ...] | None:
    if "valueQuantity" in observation:
        return (float(observation["valueQuantity"]["value"]),)
    parts = [c.get("valueQuantity", {}).get("value") for c in observation.get("component") or []]
    if parts and all(isinstance(p, int | float) for p in parts):
        return tuple(float(p) for p in parts)
    return None


def _practitioner_name(practitioner: dict[str, Any]) -> str:
    name = (practitioner.get("name") or [{}])[0]
    return " ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")]).strip()


def _prescriber(p: PatientBundle, request: dict[str, Any]) -> str | None:
    if (request.get("requester") or {}).get("display"):
        return str(request["requester"]["display"])
    encounter = p.get((request.get("encounter") or {}).get("reference"))
    for participant in (encounter or {}).get("participant") or []:
        codes = {c.get("code") for t in participant.get("type") or [] for c in t.get("coding") or []}
        practitioner = p.get((participant.get("individual") or {}).get("reference"))
        if "PPRF" in codes and practitioner:
            return _practitioner_name(practitioner)
    return None


def condition_questions(p: PatientBundle, others: list[PatientBundle]) -> list[Question]:
    out: list[Question] = []
    groups = _grouped(p.of_type("Condition"), "code")
    disorders = [g for g in groups.values() if _display(g[0]["code"]).endswith("(disorder)")]
    for group in disorders[:PER_PATIENT]:
        display = _display(group[0]["code"])
        step = Step(
            {"resource_type": "Condition", "code": _token(group[0]["code"])},
            [Answer(_key(r), (display,)) for r in _newest(group, "onsetDateTime")],
        )
        out.append(
            Question("condition existence", p.patient_id, f"Has the patient ever had {display}?", [step])
        )
    other_codes = {code: g[0] for o in others for code, g in _grouped(o.of_type("Condition"), "code").items()}
    absent = [c for code, c in sorted(other_codes.items()) if code not in groups]
    if absent:
        display = _display(absent[0]["code"])
        step = Step({"resource_type": "Condition", "code": _token(absent[0]["code"])}, [])
        out.append(
            Question(ABSENT, p.patient_id, f"Has the patient ever had {display}?", [step], absent=True)
        )

    by_ancestor: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for code, group in groups.items():
        if code in SNOMED_IS_A:
            by_ancestor[SNOMED_IS_A[code]].extend(group)
    for ancestor, members in sorted(by_ancestor.items())[:PER_PATIENT]:
        answers = [Answer(_key(r), (_display(r["code"]),)) for r in _newest(members, "onsetDateTime")]
        out.append(
            Question(
                "condition existence (transitive)",
                p.patient_id,
                f"Has the patient had any {ancestor.lower()}? Which, most recently?",
                [Step({}, answers)],
                ancestor=ancestor,
            )
        )

    single = [g[0] for g in disorders if len(g) == 1 and g[0].get("encounter")]
    observations = [o for o in p.of_type("Observation") if _quantity_facts(o) and "valueQuantity" in o]
    made = 0
    for condition in single:
        visit = [o for o in observations if o.get("encounter") == condition["encounter"]]
        counts = _grouped(visit, "code")
        unique = {code: g[0] for code, g in counts.items() if len(g) == 1}
        chosen = next((c for c in PREFERRED_VITALS if c in unique), next(iter(sorted(unique)), None))
        if chosen is None:
            continue
        obs = unique[chosen]
        facts = _quantity_facts(obs) or ()
        out.append(
            Question(
                "observation (dependent)",
                p.patient_id,
                f"What was the patient's {_display(obs['code'])} at the visit where "
                f"{_display(condition['code'])} was diagnosed?",
                [
                    Step(
                        {"resource_type": "Condition", "code": _token(condition["code"])},
                        [Answer(_key(condition), (_display(condition["code"]),))],
                    ),
                    Step(
                        {
                            "resource_type": "Observation",
                            "code": _token(obs["code"]),
                            "date_from": _FROM_PREVIOUS,
                            "date_to": _FROM_PREVIOUS,
                        },
                        [Answer(_key(obs), facts)],
                    ),
                ],
            )
        )
        made += 1
        if made == PER_PATIENT:
            break
    return out


def immunization_questions(p: PatientBundle) -> list[Question]:
    out: list[Question] = []
    groups = _grouped(p.of_type("Immunization"), "vaccineCode")
    for group in list(groups.values())[:PER_PATIENT]:
        display = _display(group[0]["vaccineCode"])
        newest = _newest(group, "occurrenceDateTime")
        answers = [Answer(_key(r), (display, day(r["occurrenceDateTime"]))) for r in newest]
        step = Step({"resource_type": "Immunization", "code": _token(group[0]["vaccineCode"])}, answers)
        out.append(
            Question(
                "immunization date", p.patient_id, f"When did the patient last receive {display}?", [step]
            )
        )
    everything = p.of_type("Immunization")
    if everything:
        oldest_day = min(day(r["occurrenceDateTime"]) for r in everything)
        first = [r for r in everything if day(r["occurrenceDateTime"]) == oldest_day]
        step = Step(
            {"resource_type": "Immunization", "date_from": oldest_day, "date_to": oldest_day},
            [Answer(_key(r), (_display(r["vaccineCode"]), oldest_day)) for r in first[:1]],
        )
        out.append(
            Question("immunization date", p.patient_id, f"Which vaccine was given on {oldest_day}?", [step])
        )
    return out


def medication_questions(p: PatientBundle) -> list[Question]:
    out: list[Question] = []
    requests = sorted(p.of_type("MedicationRequest"), key=lambda r: r["authoredOn"], reverse=True)
    for request in [r for r in requests if r["status"] == "active"][:PER_PATIENT]:
        display = _display(request["medicationCodeableConcept"])
        step = Step({"resource_type": "MedicationRequest"}, [Answer(_key(request), (display, "active"))])
        out.append(
            Question("medication current", p.patient_id, f"Is the patient currently on {display}?", [step])
        )
    groups = _grouped(requests, "medicationCodeableConcept")
    for group in list(groups.values())[:PER_PATIENT]:
        concept = group[0]["medicationCodeableConcept"]
        display = _display(concept)
        newest = _newest(group, "authoredOn")
        step = Step(
            {"resource_type": "MedicationRequest", "code": _token(concept)},
            [Answer(_key(r), (display,)) for r in newest],
        )
        out.append(Question("medication existence", p.patient_id, f"Was {display} ever prescribed?", [step]))
        step = Step(
            {"resource_type": "MedicationRequest", "code": _token(concept)},
            [Answer(_key(r), (day(r["authoredOn"]),)) for r in newest],
        )
        out.append(
            Question(
                "medication prescription date", p.patient_id, f"When was {display} last prescribed?", [step]
            )
        )
    made = 0
    for request in requests:
        name = _prescriber(p, request)
        if name is None:
            continue
        concept = request["medicationCodeableConcept"]
        when = day(request["authoredOn"])
        step = Step(
            {
                "resource_type": "MedicationRequest",
                "code": _token(concept),
                "date_from": when,
                "date_to": when,
            },
            [Answer(_key(request), (_display(concept), name))],
        )
        out.append(
            Question(
                "medication prescriber",
                p.patient_id,
                f"Who prescribed {_display(concept)} on {when}?",
                [step],
            )
        )
        made += 1
        if made == PER_PATIENT:
            break
    by_reason: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for request in requests:
        for ref in request.get("reasonReference") or []:
            condition = p.get(ref.get("reference"))
            if condition is not None:
                by_reason[_display(condition["code"])].append((request, condition))
    for reason, pairs in sorted(by_reason.items())[:PER_PATIENT]:
        words = re.sub(r"\s*\([^)]*\)$", "", reason)
        answers = [
            Answer(_key(r), (_display(r["medicationCodeableConcept"]), reason, f"[{_key(c)}]"))
            for r, c in pairs
        ]
        step = Step({"resource_type": "MedicationRequest", "text": words}, answers)
        out.append(
            Question("medication for condition", p.patient_id, f"What was prescribed for {reason}?", [step])
        )
    return out


def observation_questions(p: PatientBundle) -> list[Question]:
    out: list[Question] = []
    groups = _grouped([o for o in p.of_type("Observation") if _quantity_facts(o)], "code")
    ranked = sorted(groups.values(), key=lambda g: (-len(g), str(first_coding(g[0]["code"]).get("code"))))
    for group in ranked[:PER_PATIENT]:
        display = _display(group[0]["code"])
        newest = _newest(group, "effectiveDateTime")
        answers = [Answer(_key(r), _quantity_facts(r) or ()) for r in newest]
        step = Step({"resource_type": "Observation", "code": _token(group[0]["code"])}, answers)
        out.append(Question("observation value", p.patient_id, f"What was the latest {display}?", [step]))
    if ranked:
        group = sorted(ranked[0], key=lambda r: r["effectiveDateTime"])
        middle = group[len(group) // 2]
        when = day(middle["effectiveDateTime"])
        same_day = [r for r in group if day(r["effectiveDateTime"]) == when]
        step = Step(
            {
                "resource_type": "Observation",
                "code": _token(middle["code"]),
                "date_from": when,
                "date_to": when,
            },
            [Answer(_key(r), _quantity_facts(r) or ()) for r in same_day],
        )
        out.append(
            Question(
                "observation value",
                p.patient_id,
                f"What was the {_display(middle['code'])} on {when}?",
                [step],
            )
        )
    coded = [o for o in p.of_type("Observation") if "valueCodeableConcept" in o]
    if coded:
        newest = _newest(coded, "effectiveDateTime")
        newest = [r for r in newest if r["code"] == newest[0]["code"]]
        step = Step(
            {"resource_type": "Observation", "code": _token(newest[0]["code"])},
            [Answer(_key(r), (_display(r["valueCodeableConcept"]),)) for r in newest],
        )
        out.append(
            Question(
                "observation value",
                p.patient_id,
                f"What is the latest {_display(newest[0]['code'])}?",
                [step],
            )
        )
    return out


def build_questions(cohort: list[PatientBundle]) -> list[Question]:
    questions: list[Question] = []
    for p in cohort:
        others = [o for o in cohort if o is not p]
        questions += condition_questions(p, others)
        questions += immunization_questions(p)
        questions += medication_questions(p)
        questions += observation_questions(p)
    return questions


# -- asking the tools ------------------------------------------------------------------------------


def _line_for(text: str, citation: str) -> str | None:
    return next((line for line in text.splitlines() if line.endswith(f"[{citation}]")), None)


def _has_fact(line: str, fact: str | float) -> bool:
    if isinstance(fact, str):
        return fact.casefold() in line.casefold()
    body = _BRACKETS.sub(" ", line)[10:]
    return any(abs(float(n) - fact) <= max(5e-5, 1e-6 * abs(fact)) for n in _NUMBER.findall(body))


def _found(text: str, answers: list[Answer]) -> Answer | None:
    for answer in answers:
        line = _line_for(text, answer.citation)
        if line is not None and all(_has_fact(line, f) for f in answer.facts):
            return answer
    return None


def _manifest_condition_codes(manifest: str) -> list[str]:
    lines = manifest.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("Condition: "))
    return re.findall(r"(?:^|; )(\d+) ", lines[index + 1].strip())


async def ask(question: Question, tools: dict[str, BaseTool]) -> tuple[bool, int, str]:
    """Run the planner's calls for one question; (answered, tool calls, last output)."""
    search, manifest_tool = tools["search_record"], tools["record_manifest"]
    pid = {"patient_id": question.patient_id}
    if question.ancestor is not None:
        manifest = str(await manifest_tool.ainvoke(pid))
        codes = [c for c in _manifest_condition_codes(manifest) if SNOMED_IS_A.get(c) == question.ancestor]
        outputs = [
            str(await search.ainvoke({"resource_type": "Condition", "code": f"{SNOMED}|{c}", **pid}))
            for c in codes
        ]
        text = "\n".join(outputs)
        return _found(text, question.steps[0].answers) is not None, 1 + len(codes), text
    previous: str | None = None
    calls = 0
    text = ""
    for step in question.steps:
        args = {k: (previous if v == _FROM_PREVIOUS else v) for k, v in step.args.items()}
        text = str(await search.ainvoke({**args, **pid}))
        calls += 1
        if question.absent:
            return "(not found in the record)" in text and "[Condition/" not in text, calls, text
        answer = _found(text, step.answers)
        if answer is None:
            return False, calls, text
        line = _line_for(text, answer.citation) or ""
        visit = _VISIT.search(line)
        previous = visit.group(1) if visit else line[:10]
    return True, calls, text


@pytest.fixture(scope="module")
def cohort(cohort_dir: Path) -> list[PatientBundle]:
    return load_cohort(cohort_dir)


async def test_questions_are_answerable_from_the_bundles(cohort: list[PatientBundle]) -> None:
    questions = build_questions(cohort)
    assert len([q for q in questions if not q.absent]) >= 20
    assert {q.category for q in questions} >= set(CATEGORIES)
    for question in questions:
        if not question.absent:
            assert all(step.answers for step in question.steps), question.text


async def test_evidence_recall_per_category(
    fhir_client: FhirClient, cohort: list[PatientBundle], capsys: pytest.CaptureFixture[str]
) -> None:
    tools = {t.name: t for t in make_fhir_tools(fhir_client)}
    questions = build_questions(cohort)
    rows: dict[str, list[int]] = {c: [0, 0, 0] for c in (*CATEGORIES, ABSENT)}
    failures: list[str] = []
    for question in questions:
        ok, calls, text = await ask(question, tools)
        row = rows[question.category]
        row[0] += 1
        row[1] += ok
        row[2] += calls
        if not ok:
            failures.append(
                f"{question.category}: {question.text} -> {question.steps[-1].args}\n{text[:600]}"
            )
    table = ["", f"{'EHRQA category':36} {'questions':>9} {'recalled':>8} {'recall':>7} {'calls':>5}"]
    for category, (n, hit, calls) in rows.items():
        table.append(f"{category:36} {n:9d} {hit:8d} {hit / max(n, 1):7.0%} {calls:5d}")
    positives = [r for c, r in rows.items() if c != ABSENT]
    total, hits = sum(r[0] for r in positives), sum(r[1] for r in positives)
    table.append(f"{'all ten categories':36} {total:9d} {hits:8d} {hits / max(total, 1):7.0%}")
    with capsys.disabled():
        print("\n".join(table))
    assert all(rows[c][0] > 0 for c in CATEGORIES), table
    assert total >= 20
    assert not failures, "\n\n".join(failures)
