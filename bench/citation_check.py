"""Citation checker benchmark: precision and recall on correct and corrupted EHRQA answers, in one run.

Starts the embedded FHIR server with the demo cohort, generates the EHRQA demo questions (seed 0), runs
each question's gold tool calls through the real `search_record` tool and keeps the cited lines as the
evidence, exactly as the EHR QA graph's retrieve node does. Then:
- the oracle answer (gold `answer_text` citing the gold resources) of every question that cites
  something must pass the checker: each rejection is listed;
- each answer is corrupted in every way that applies: a wrong value (a number changed), a wrong date
  (a day moved), a wrong unit, a value from another resource (a number, date or name taken from an
  evidence line the answer does not cite), another option of a multiple-choice question;
- precision = flagged corrupted / all flagged, recall = flagged corrupted / all corrupted.
Writes bench/results/citation_check.json.

    python bench/citation_check.py [--limit N] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from machine import machine  # bench/machine.py, beside this script

from clinicflow.agents.ehr_qa import citations_in
from clinicflow.evals.ehrqa.generator import generate_questions
from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.records import read_records
from clinicflow.evals.ehrqa.retrieval import GoldCallRunner
from clinicflow.fhir import FhirClient
from clinicflow.fhir.demo import (
    DEMO_PATIENTS,
    DEMO_SEED,
    copy_demo_database,
    ensure_demo_cohort,
    ensure_demo_database,
    free_port,
)
from clinicflow.fhir.server import EmbeddedFhirServer
from clinicflow.graphs.ehr_qa.claims import check_answer
from clinicflow.graphs.ehr_qa.nodes import evidence_items
from clinicflow.settings import Settings
from clinicflow.tools import make_fhir_tools

ROOT = Path(__file__).resolve().parent
_NUMBER = re.compile(r"(?<![\w.\-])(\d+(?:\.\d+)?)(?![\w.]*\d)")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_OPTION = re.compile(r"^([A-E])\. (.+)$")
_SWAP_UNITS = {"%": "mg/dL", "kg": "lb", "mmHg": "%", "cm": "in", "/min": "mmHg", "fL": "pg", "pg": "fL"}


def _evidence(outputs: list[str]) -> list[dict[str, Any]]:
    items = [line for text in outputs for line in evidence_items(text)]
    return [{"text": line, "citations": citations_in(line)} for line in dict.fromkeys(items)]


def _flagged(answer: str, citations: list[str], evidence: list[dict[str, Any]], question: str) -> bool:
    return any(not c.supported for c in check_answer(answer, citations, evidence, question))


def _perturb(number: str) -> str:
    places = len(number.partition(".")[2])
    value = float(number)
    changed = value * 1.13 + (1 if places == 0 else 10**-places * 7)
    return f"{changed:.{places}f}"


def corruptions(q: Question, evidence: list[dict[str, Any]], cited: list[str]) -> list[tuple[str, str]]:
    """(kind, corrupted answer text) for the ways this answer can be made wrong."""
    answer = q.answer_text
    out: list[tuple[str, str]] = []
    numbers = _NUMBER.findall(_DATE.sub(" ", answer))
    if numbers:
        out.append(("wrong value", answer.replace(numbers[-1], _perturb(numbers[-1]), 1)))
    for day in _DATE.findall(answer):
        moved = (dt.date.fromisoformat(day) + dt.timedelta(days=17)).isoformat()
        out.append(("wrong date", answer.replace(day, moved)))
    unit = next((u for u in _SWAP_UNITS if numbers and answer.endswith(" " + u)), None)
    if unit:
        out.append(("wrong unit", answer[: -len(unit)] + _SWAP_UNITS[unit]))
    others = [e["text"] for e in evidence if not set(e["citations"]) & set(cited)]
    if others and q.kind in ("number", "date", "text", "name"):
        cited_text = " ".join(e["text"] for e in evidence if set(e["citations"]) & set(cited))
        stolen = _steal(q, answer, others, cited_text)
        if stolen:
            out.append(("value from another resource", stolen))
    if q.form == "multiple_choice":
        options = [m for o in q.options if (m := _OPTION.match(o))] or [
            m for line in q.text.splitlines() if (m := _OPTION.match(line.strip()))
        ]
        gold = answer.split(". ", 1)[-1]
        wrong = next((f"{m.group(1)}. {m.group(2)}" for m in options if m.group(2) != gold), None)
        if wrong:
            out.append(("another option", wrong))
    return out


def _steal(q: Question, answer: str, others: list[str], cited_text: str) -> str | None:
    """The answer with its value replaced by the same kind of value from a line it does not cite (and
    that the cited lines do not also hold)."""
    for line in others:
        body = re.sub(r"\[[^\]]*\]", "", line)
        if q.kind == "date":
            day = next((d for d in _DATE.findall(body) if d not in cited_text), None)
            if day:
                return day
        elif q.kind == "number":
            numbers = [n for n in _NUMBER.findall(_DATE.sub(" ", body)) if n not in cited_text]
            unit = answer.split(" ", 1)[1] if " " in answer else ""
            if numbers:
                return f"{numbers[0]} {unit}".strip()
        else:
            name = _DATE.sub("", body).split(";")[0].strip()
            if name and name.casefold() not in cited_text.casefold():
                return name
    return None


async def measure(limit: int | None) -> dict[str, Any]:
    settings = Settings()  # type: ignore[call-arg]
    cohort = ensure_demo_cohort(settings.cache_dir, DEMO_PATIENTS, DEMO_SEED, progress=False)
    questions = generate_questions(read_records(cohort), seed=0)[:limit]
    loaded = await ensure_demo_database(settings.cache_dir, DEMO_PATIENTS, DEMO_SEED, progress=False)
    data_dir = copy_demo_database(loaded, Path(__import__("tempfile").mkdtemp(prefix="citation-check-")))
    rejected: list[dict[str, Any]] = []
    corrupted: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    missed: list[dict[str, Any]] = []
    correct = refused_uncited = 0
    started = time.perf_counter()
    with EmbeddedFhirServer(data_dir, port=free_port()) as server:
        async with FhirClient(server.base_url) as client:
            run = GoldCallRunner(make_fhir_tools(client))
            for q in questions:
                outputs = [await run(q.patient_id, c) for c in q.gold_calls if not c.expect_absent]
                evidence = _evidence(outputs)
                shown = {c for e in evidence for c in e["citations"]}
                cited = [g for g in q.gold_ids if g in shown]
                if not cited:
                    refused_uncited += 1  # the graph refuses an answer citing nothing before any check
                    continue
                correct += 1
                if _flagged(q.answer_text, cited, evidence, q.text):
                    checks = check_answer(q.answer_text, cited, evidence, q.text)
                    rejected.append(
                        {
                            "id": q.id,
                            "qtype": q.qtype,
                            "answer": q.answer_text,
                            "checks": [c.summary() for c in checks],
                        }
                    )
                for kind, wrong in corruptions(q, evidence, cited):
                    corrupted[kind] += 1
                    if _flagged(wrong, cited, evidence, q.text):
                        caught[kind] += 1
                    else:
                        missed.append({"id": q.id, "kind": kind, "gold": q.answer_text, "corrupted": wrong})
    flagged_true = sum(caught.values())
    total_corrupted = sum(corrupted.values())
    flagged = flagged_true + len(rejected)
    return {
        "machine": machine(),
        "questions": len(questions),
        "correct_answers_checked": correct,
        "uncited_answers_refused_before_the_check": refused_uncited,
        "correct_rejected": len(rejected),
        "corrupted": total_corrupted,
        "corrupted_by_kind": dict(corrupted),
        "caught_by_kind": dict(caught),
        "precision": round(flagged_true / flagged, 4) if flagged else 1.0,
        "recall": round(flagged_true / total_corrupted, 4) if total_corrupted else 0.0,
        "seconds": round(time.perf_counter() - started, 1),
        "rejected": rejected,
        "missed": missed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="Check only the first N questions.")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "citation_check.json")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.limit))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    caught = result["caught_by_kind"]
    kinds = ", ".join(f"{k} {caught.get(k, 0)}/{n}" for k, n in result["corrupted_by_kind"].items())
    print(
        f"questions {result['questions']}: {result['correct_answers_checked']} correct answers checked, "
        f"{result['correct_rejected']} rejected; {result['corrupted']} corrupted, caught: {kinds}"
    )
    print(f"precision {result['precision']:.4f}  recall {result['recall']:.4f}  ({result['seconds']} s)")
    for item in result["rejected"][:20]:
        print("REJECTED", item["id"], item["qtype"], item["checks"])
    for item in result["missed"][:30]:
        print("MISSED", item)
    return 0 if result["correct_rejected"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
