"""Resumable runs and the report: results log, skip on rerun, config check, Markdown/JSON/plots, ratio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.runner import RunConfigMismatchError, run_ehrqa


def _answerer(mode: str, calls: list[str], *, right: bool = True, fail: set[str] | None = None) -> Any:
    async def answer(q: Question) -> dict[str, Any]:
        calls.append(q.id)
        if fail and q.id in fail:
            raise ConnectionError("FHIR server unreachable")
        tokens = 20_000 if mode == "full" else 3_000
        return {
            "answer": q.answer_text if right else "not sure",
            "correct": right,
            "status": "answered",
            "evidence_recall": 1.0 if q.gold_ids else None,
            "prompt_tokens": tokens,
            "completion_tokens": 10,
            "model_calls": 1 if mode == "full" else 4,
            "tool_calls": 0 if mode == "full" else 3,
            "latency_s": 0.01,
        }

    return answer


async def test_run_records_resumes_and_reports(tmp_path: Path, all_questions: list[Question]) -> None:
    questions = all_questions[:30]
    calls: list[str] = []
    fail = {questions[0].id}
    info = {"model": "fake", "seed": 0, "per_patient": 200, "context_tokens": 32768, "max_steps": 8}
    first = await run_ehrqa(
        questions,
        tmp_path,
        {"full": _answerer("full", calls), "agentic": _answerer("agentic", calls, fail=fail)},
        run_info=info,
        context={"records": 1, "did_not_fit": 0, "context_tokens": 32768},
    )
    assert first.ran == 59 and first.skipped == 0
    assert [f["question_id"] for f in first.failures] == [questions[0].id]
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 59
    calls.clear()
    second = await run_ehrqa(
        questions,
        tmp_path,
        {"full": _answerer("full", calls), "agentic": _answerer("agentic", calls)},
        run_info=info,
    )
    assert calls == [questions[0].id] and second.skipped == 59 and second.ran == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["modes"]["full"]["n"] == 30 and report["modes"]["agentic"]["n"] == 30
    assert report["modes"]["agentic"]["mean_category_accuracy"] == pytest.approx(1.0)
    assert report["token_ratio"]["agentic_over_full"] == pytest.approx(3010 / 20010, rel=1e-3)
    markdown = (tmp_path / "report.md").read_text()
    assert "Token ratio, agentic / full-context: 0.150" in markdown
    assert "| Condition existence |" in markdown
    for name in ("accuracy.png", "tokens.png", "questions.jsonl", "run.json"):
        assert (tmp_path / name).stat().st_size > 0
    with pytest.raises(RunConfigMismatchError, match="model"):
        await run_ehrqa(
            questions, tmp_path, {"full": _answerer("full", calls)}, run_info={**info, "model": "other"}
        )


async def test_a_cut_short_results_line_is_rerun(tmp_path: Path, all_questions: list[Question]) -> None:
    questions = all_questions[:3]
    calls: list[str] = []
    info = {"model": "fake"}
    await run_ehrqa(questions, tmp_path, {"full": _answerer("full", calls)}, run_info=info)
    results = tmp_path / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    calls.clear()
    summary = await run_ehrqa(questions, tmp_path, {"full": _answerer("full", calls)}, run_info=info)
    assert calls == [questions[2].id] and summary.report["modes"]["full"]["n"] == 3


async def test_a_rerun_may_select_more_of_the_same_questions(
    tmp_path: Path, all_questions: list[Question]
) -> None:
    calls: list[str] = []
    info = {"model": "fake", "questions_sha256": "digest-of-the-whole-set"}
    await run_ehrqa(all_questions[:2], tmp_path, {"full": _answerer("full", calls)}, run_info=info)
    calls.clear()
    summary = await run_ehrqa(all_questions[:5], tmp_path, {"full": _answerer("full", calls)}, run_info=info)
    assert calls == [q.id for q in all_questions[2:5]] and summary.skipped == 2
    assert summary.report["modes"]["full"]["n"] == 5
