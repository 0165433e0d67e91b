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
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from clinicflow.evals.ehrqa.questions import Question, write_questions
from clinicflow.evals.ehrqa.report import build_report, write_report

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


class RunConfigMismatchError(ValueError):
    """The output folder holds a run with a different configuration."""


def questions_digest(questions: Sequence[Question]) -> str:
    """SHA-256 over the question ids, texts and answers."""
    h = hashlib.sha256()
    for q in questions:
        h.update(f"{q.id}\t{q.text}\t{q.answer}\n".encode())
    return h.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class RunStore:
    """The files of one run folder; results are appended one line per (question, mode)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.manifest_path = out_dir / "run.json"
        self.results_path = out_dir / "results.jsonl"
        self.questions_path = out_dir / "questions.jsonl"

    def open(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create the folder, or check that the run already in it has the same configuration."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.manifest_path.exists():
            try:
                previous = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise RunConfigMismatchError(
                    f"{self.manifest_path} is unreadable ({exc}); use a new --out"
                ) from exc
            changed = [k for k in COMPARED_KEYS if previous.get(k) != manifest.get(k)]
            if changed:
                detail = "; ".join(f"{k}: {previous.get(k)!r} -> {manifest.get(k)!r}" for k in changed)
                raise RunConfigMismatchError(
                    f"{self.out_dir} holds a run with a different configuration ({detail}); "
                    "rerun with the same settings to resume, or choose a new --out"
                )
            merged: dict[str, Any] = {**previous, **{k: v for k, v in manifest.items() if k not in previous}}
            return merged
        if self.results_path.exists() and self.results_path.stat().st_size:
            raise RunConfigMismatchError(f"{self.out_dir} holds results without run.json; choose a new --out")
        _write_atomic(self.manifest_path, json.dumps(dict(manifest), indent=2, ensure_ascii=False) + "\n")
        return dict(manifest)

    def finished(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Finished results by (question id, mode); a line cut short by a kill is ignored."""
        done: dict[tuple[str, str], dict[str, Any]] = {}
        if not self.results_path.exists():
            return done
        for line in self.results_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("question_id"), str):
                done[(record["question_id"], str(record.get("mode")))] = record
        return done

    def record(self, result: Mapping[str, Any]) -> None:
        """Append and fsync one results line (after a line a kill cut short, on a line of its own)."""
        text = json.dumps(dict(result), ensure_ascii=False, default=str) + "\n"
        if self.results_path.exists() and self.results_path.stat().st_size:
            with self.results_path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    text = "\n" + text
        with self.results_path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class RunSummary:
    """What a run did: answered now, skipped as finished, failed; the report and its files."""

    out_dir: Path
    ran: int
    skipped: int
    failures: list[dict[str, str]]
    report: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)


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
            store.record(line)
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
