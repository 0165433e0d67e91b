"""Resumable EHRQA runs: the same questions in full-context and/or agentic mode, a results log, a report.

Layout of an output folder::

    run.json          what was run (question-set digest, model, seed, context size); a rerun must match
    questions.jsonl   the generated questions (rewritten on each run; generation is deterministic)
    results.jsonl     one line per finished (question, mode), appended and fsynced as each one ends
    report.{md,json}, accuracy.png, tokens.png   written after every run, over all finished questions

A question counts as finished in a mode once its results line is written; a rerun skips it. Questions
that raised (a FHIR server outage, a crashed model) are reported and retried on the next run.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from clinicflow.evals.ehrqa.questions import Question, write_questions
from clinicflow.evals.ehrqa.report import build_report, write_report
from clinicflow.evals.run_folder import RunConfigMismatchError, RunFolder, RunSummary

__all__ = [
    "COMPARED_KEYS",
    "MODES",
    "Mode",
    "RunConfigMismatchError",
    "RunStore",
    "RunSummary",
    "questions_digest",
    "run_ehrqa",
]

Mode = Literal["full", "agentic"]
MODES: tuple[Mode, ...] = ("full", "agentic")
COMPARED_KEYS = ("questions_sha256", "model", "seed", "per_patient", "context_tokens", "max_steps")
"""run.json keys a rerun into the same folder must match (limit, patients and concurrency may change)."""

Answerer = Callable[[Question], Awaitable[dict[str, Any]]]


def questions_digest(questions: Sequence[Question]) -> str:
    """SHA-256 over the question ids, texts and answers."""
    h = hashlib.sha256()
    for q in questions:
        h.update(f"{q.id}\t{q.text}\t{q.answer}\n".encode())
    return h.hexdigest()


class RunStore(RunFolder):
    """The files of one run folder; results are appended one line per (question, mode)."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__(out_dir, COMPARED_KEYS)
        self.questions_path = out_dir / "questions.jsonl"

    def finished(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Finished results by (question id, mode); a line cut short by a kill is ignored."""
        return {
            (r["question_id"], str(r.get("mode"))): r
            for r in self.results()
            if isinstance(r.get("question_id"), str)
        }


def _line(question: Question, mode: Mode, result: Mapping[str, Any], elapsed: float) -> dict[str, Any]:
    return {
        "question_id": question.id,
        "mode": mode,
        "patient_id": question.patient_id,
        "category": question.category,
        "qtype": question.qtype,
        "form": question.form,
        "split": question.split,
        "gold": question.answer_text,
        **result,
        "elapsed_s": round(elapsed, 3),
        "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


async def run_ehrqa(
    questions: Sequence[Question],
    out_dir: Path,
    answerers: Mapping[Mode, Answerer],
    *,
    run_info: Mapping[str, Any] | None = None,
    concurrency: int = 1,
    context: Mapping[str, Any] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Answer every unfinished question in each mode of `answerers`, record each, and write the report.

    `context` adds full-context facts to the report (records that did not fit the context). Pass the
    digest of the whole generated set as `run_info["questions_sha256"]` so that a rerun may select a
    different subset (limit, split) of the same questions.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    store = RunStore(out_dir)
    manifest = {"questions_sha256": questions_digest(questions), **dict(run_info or {})}
    manifest.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    manifest = store.open(manifest)
    write_questions(questions, store.questions_path)
    done = store.finished()
    failures: list[dict[str, str]] = []
    semaphore = asyncio.Semaphore(concurrency)
    ran = skipped = 0

    async def one(question: Question, mode: Mode, answer: Answerer) -> None:
        nonlocal ran
        async with semaphore:
            started = time.perf_counter()
            try:
                result = await answer(question)
            except Exception as exc:
                failures.append(
                    {"question_id": question.id, "mode": mode, "error": f"{type(exc).__name__}: {exc}"}
                )
                return
            line = _line(question, mode, result, time.perf_counter() - started)
            store.append(line)
            ran += 1
            if on_result is not None:
                on_result(line)

    for mode, answer in answerers.items():
        pending = [q for q in questions if (q.id, mode) not in done]
        skipped += len(questions) - len(pending)
        async with asyncio.TaskGroup() as group:
            for q in pending:
                group.create_task(one(q, mode, answer))

    ids = {q.id for q in questions}
    results = [r for (qid, _), r in store.finished().items() if qid in ids]
    report = build_report(results, questions, manifest=manifest, context=context, failures=failures)
    paths = write_report(report, out_dir)
    return RunSummary(out_dir, ran, skipped, failures, report, paths)
