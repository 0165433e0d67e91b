"""Full-context mode: the condensed record, its cut at the context limit, one model call per question."""

from __future__ import annotations

from clinicflow.evals.ehrqa.fullcontext import FullContextRunner, fit_record, record_lines
from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.records import RecordSet
from tests.fakes import ScriptedChatModel, text_reply


def test_record_lines_are_dated_oldest_first_without_citations(fixture_records: RecordSet) -> None:
    record = fixture_records.records[0]
    lines = record_lines(record)
    assert lines[0].text.startswith("Patient Rosa Vega")
    days = [line.day for line in lines[1:]]
    assert days == sorted(days) and all(days)
    assert not any("[Observation/" in line.text for line in lines)
    assert any("requester Dr. Chen03 Wu03" in line.text for line in lines)
    assert any("reason Viral sinusitis (disorder)" in line.text for line in lines)
    kinds = {line.ref.split("/")[0] for line in lines}
    assert {"Condition", "MedicationRequest", "Immunization", "Observation", "Encounter"} <= kinds


def test_a_record_over_the_limit_loses_its_oldest_lines(fixture_records: RecordSet) -> None:
    record = fixture_records.records[0]
    whole = fit_record(record, 100_000)
    assert whole.fits and whole.lines_kept == whole.lines_total
    cut = fit_record(record, whole.tokens // 2)
    assert not cut.fits and cut.tokens <= whole.tokens // 2
    assert cut.text.splitlines()[0].startswith("Patient")
    kept_days = [line.split(" ")[0] for line in cut.text.splitlines()[1:]]
    assert min(kept_days) > "2015-02-10"


async def test_runner_scores_the_reply_and_reports_context_recall(
    fixture_records: RecordSet, all_questions: list[Question]
) -> None:
    q = next(q for q in all_questions if q.qtype == "obs_latest" and "Body Weight" in q.text)
    model = ScriptedChatModel(script=[text_reply("85.5 kg"), text_reply("about 90 kg")])
    runner = FullContextRunner(model, {r.patient_id: r for r in fixture_records}, context_tokens=32_768)
    first = await runner.answer(q)
    assert first["correct"] and first["context_fits"] and first["evidence_recall"] == 1.0
    assert first["model_calls"] == 1 and first["tool_calls"] == 0 and first["prompt_tokens"] > 300
    prompt = model.calls[0].text
    assert "Body Weight 85.5 kg" in prompt and q.text in prompt
    assert not (await runner.answer(q))["correct"]
