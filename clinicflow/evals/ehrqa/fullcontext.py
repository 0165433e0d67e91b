"""Full-context mode, the report's protocol: the whole record as condensed plain text in one prompt.

Each clinical resource becomes one dated line (the tools' renderer, without citations), oldest first,
the patient's demographics on top. A record longer than the model's context (minus room for the
instructions, the question and the reply) loses its oldest lines; how many records did not fit, and
whether each question's gold lines survived the cut, are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.records import PatientRecord
from clinicflow.evals.ehrqa.scoring import REFUSAL, score
from clinicflow.fhir.references import belongs_to_patient, reference_key
from clinicflow.tools.render import (
    References,
    concept_text,
    estimate_tokens,
    human_name,
    render_resource,
    resource_date,
)

__all__ = [
    "FULL_CONTEXT_PROMPT",
    "FULL_CONTEXT_TYPES",
    "FullContextRunner",
    "RecordText",
    "fit_record",
    "record_lines",
    "token_counter",
]

FULL_CONTEXT_TYPES = (
    "Patient",
    "Condition",
    "MedicationRequest",
    "MedicationAdministration",
    "MedicationStatement",
    "Immunization",
    "Observation",
    "Procedure",
    "AllergyIntolerance",
    "Encounter",
    "DiagnosticReport",
    "CarePlan",
    "ImagingStudy",
    "Device",
)
"""Resource types in the condensed record (billing, provenance and note bodies are left out)."""

FULL_CONTEXT_PROMPT = f"""\
You answer questions about one patient using the patient's health record below. Each line is one \
record entry, starting with its date. Answer briefly, in the form the question asks for (yes or no, an \
option letter, a date, a number with its unit, a name). If the record does not hold the answer, reply \
exactly "{REFUSAL}"."""

_REPLY_RESERVE = 512
_CITATION_SUFFIX = " ["


@dataclass(frozen=True)
class _Line:
    day: str
    text: str
    ref: str


@dataclass
class RecordText:
    """The condensed record as sent: its text, which resources it kept, and whether all of it fit."""

    patient_id: str
    text: str
    tokens: int
    lines_total: int
    lines_kept: int
    kept: set[str] = field(default_factory=set)

    @property
    def fits(self) -> bool:
        return self.lines_kept == self.lines_total


def _references(record: PatientRecord) -> References:
    names: dict[str, str] = {}
    performers: dict[str, str] = {}
    for key, resource in record.shared.items():
        rtype = resource.get("resourceType")
        if rtype in ("Practitioner", "Organization", "Location"):
            label = human_name(resource)
        elif rtype == "PractitionerRole":
            practitioner = resource.get("practitioner") or {}
            label = practitioner.get("display")
        elif rtype == "Medication" or (
            rtype == "Condition" and belongs_to_patient(resource, record.patient_id)
        ):
            label = concept_text(resource.get("code"))
        else:
            label = None
        if label:
            names[key] = str(label)
    for r in record.resources:
        if r.get("resourceType") != "Encounter":
            continue
        participants = [p for p in r.get("participant") or [] if isinstance(p, Mapping)]
        primary = [
            p
            for p in participants
            if any(
                c.get("code") == "PPRF" for t in p.get("type") or [] for c in (t or {}).get("coding") or []
            )
        ]
        for p in primary or participants:
            ref = reference_key(p.get("individual"))
            if ref is not None and ref.partition("/")[0] in ("Practitioner", "PractitionerRole"):
                performers[f"Encounter/{r.get('id')}"] = ref
                break
    return References(names=names, encounter_performers=performers)


def record_lines(record: PatientRecord, types: Sequence[str] = FULL_CONTEXT_TYPES) -> list[_Line]:
    """One line per clinical resource, oldest first, the Patient line first; citations stripped."""
    refs = _references(record)
    lines = []
    for r in [record.patient, *record.resources]:
        if r.get("resourceType") not in types:
            continue
        text = render_resource(r, refs)
        cut = text.rfind(_CITATION_SUFFIX)
        if cut > 0:
            text = text[:cut]
        day = "" if r.get("resourceType") == "Patient" else (resource_date(r) or "")[:10]
        lines.append(_Line(day, text, f"{r['resourceType']}/{r['id']}"))
    head, body = lines[:1], lines[1:]
    body.sort(key=lambda line: line.day)
    return head + body


def fit_record(
    record: PatientRecord, budget: int, count: Callable[[str], int] = estimate_tokens
) -> RecordText:
    """The condensed record within `budget` tokens: the oldest lines go first when it does not fit."""
    lines = record_lines(record)
    costs = [count(line.text) + 1 for line in lines]
    total = sum(costs)
    start = 1
    while total > budget and start < len(lines):
        total -= costs[start]
        start += 1
    kept = lines[:1] + lines[start:]
    text = "\n".join(line.text for line in kept)
    return RecordText(record.patient_id, text, total, len(lines), len(kept), {line.ref for line in kept})


def token_counter(model: BaseLanguageModel[Any]) -> Callable[[str], int]:
    """The model's own token count: its class's `get_num_tokens`, else the tokenizer of a loaded local
    model (`model.load().tokenizer`), else a four-characters-per-token estimate."""
    if type(model).get_num_tokens is not BaseLanguageModel.get_num_tokens:
        return model.get_num_tokens
    load = getattr(model, "load", None)
    try:
        tokenizer = getattr(load(), "tokenizer", None) if callable(load) else None
    except Exception:
        tokenizer = None
    if callable(tokenizer):
        return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return estimate_tokens


class FullContextRunner:
    """Answers questions with one model call over the condensed record (cached per patient)."""

    def __init__(
        self,
        model: BaseChatModel,
        records: Mapping[str, PatientRecord],
        *,
        context_tokens: int = 32_768,
        count: Callable[[str], int] | None = None,
    ) -> None:
        self.model = model
        self.records = records
        self.context_tokens = context_tokens
        self.count = count or token_counter(model)
        self._texts: dict[str, RecordText] = {}

    def record_text(self, patient_id: str) -> RecordText:
        """The condensed, cut record of one patient."""
        if patient_id not in self._texts:
            overhead = self.count(FULL_CONTEXT_PROMPT) + _REPLY_RESERVE
            self._texts[patient_id] = fit_record(
                self.records[patient_id], self.context_tokens - overhead, self.count
            )
        return self._texts[patient_id]

    def messages(self, question: Question) -> list[SystemMessage | HumanMessage]:
        """The prompt: instructions, the record, the question."""
        record = self.record_text(question.patient_id)
        return [
            SystemMessage(FULL_CONTEXT_PROMPT),
            HumanMessage(f"Patient record:\n{record.text}\n\nQuestion: {question.text}"),
        ]

    async def answer(self, question: Question) -> dict[str, Any]:
        """Ask the model; return the per-question result line."""
        messages = self.messages(question)
        record = self.record_text(question.patient_id)
        started = time.perf_counter()
        reply = await self.model.ainvoke(messages)
        latency = time.perf_counter() - started
        text = reply.text if isinstance(reply, AIMessage) else str(reply.content)
        usage = reply.usage_metadata if isinstance(reply, AIMessage) else None
        estimated = usage is None
        prompt = usage["input_tokens"] if usage else sum(self.count(str(m.content)) for m in messages)
        completion = usage["output_tokens"] if usage else self.count(text)
        gold = [g for g in question.gold_ids]
        return {
            "answer": text.strip(),
            "correct": score(question, text),
            "status": "answered",
            "evidence_recall": (sum(g in record.kept for g in gold) / len(gold)) if gold else None,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "tokens_estimated": estimated,
            "model_calls": 1,
            "tool_calls": 0,
            "latency_s": round(latency, 3),
            "context_fits": record.fits,
            "context_lines_dropped": record.lines_total - record.lines_kept,
        }
