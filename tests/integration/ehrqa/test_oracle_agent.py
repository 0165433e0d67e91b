"""A scripted oracle model through the real EHR QA graph, tools, server and scorer scores 100%; both modes
run end to end into a report with the token ratio, and fine-tuning data is exported."""

from __future__ import annotations

import json
from pathlib import Path

from clinicflow.evals.ehrqa.agentic import AgenticRunner
from clinicflow.evals.ehrqa.export import gold_examples, trajectory_examples, write_examples
from clinicflow.evals.ehrqa.fullcontext import FullContextRunner
from clinicflow.evals.ehrqa.questions import CATEGORIES, Question
from clinicflow.evals.ehrqa.records import RecordSet
from clinicflow.evals.ehrqa.retrieval import GoldCallRunner
from clinicflow.evals.ehrqa.runner import RunStore, run_ehrqa
from clinicflow.fhir import FhirClient
from clinicflow.tools.fhir_tools import make_fhir_tools
from tests.unit.ehrqa.oracle import OracleChatModel


def _one_per_type(questions: list[Question]) -> list[Question]:
    seen: dict[tuple[str, str], Question] = {}
    for q in questions:
        seen.setdefault((q.qtype, q.answer if q.kind == "yes_no" else ""), q)
    return list(seen.values())


async def test_oracle_scores_100_percent_through_the_graph(
    fhir_client: FhirClient, demo_questions: list[Question]
) -> None:
    sample = _one_per_type(demo_questions)
    assert {q.category for q in sample} == set(CATEGORIES)
    oracle = OracleChatModel()
    answer = oracle.wrap(AgenticRunner(oracle, make_fhir_tools(fhir_client)).answer)
    wrong = []
    for q in sample:
        result = await answer(q)
        if not result["correct"]:
            wrong.append(
                f"{q.id} {q.qtype}: {q.text.splitlines()[0]} gold {q.answer_text!r} got {result['answer']!r}"
            )
        if q.gold_ids:
            assert result["evidence_recall"] == 1.0, q.id
        assert result["tool_calls"] >= 1 and result["model_calls"] >= 2 and result["prompt_tokens"] > 0
    assert not wrong, "\n".join(wrong)


async def test_both_modes_report_and_export(
    fhir_client: FhirClient, demo_records: RecordSet, demo_questions: list[Question], tmp_path: Path
) -> None:
    questions = _one_per_type(demo_questions)[:24]
    oracle = OracleChatModel()
    tools = make_fhir_tools(fhir_client)
    full = FullContextRunner(oracle, {r.patient_id: r for r in demo_records})
    agentic = AgenticRunner(oracle, tools)
    summary = await run_ehrqa(
        questions,
        tmp_path,
        {"full": oracle.wrap(full.answer), "agentic": oracle.wrap(agentic.answer)},
        run_info={"model": "oracle", "seed": 0},
    )
    report = summary.report
    assert not summary.failures
    assert report["modes"]["full"]["mean_category_accuracy"] == 1.0
    assert report["modes"]["agentic"]["mean_category_accuracy"] == 1.0
    ratio = report["token_ratio"]["agentic_over_full"]
    assert 0 < ratio < 1, ratio
    assert json.loads((tmp_path / "report.json").read_text())["token_ratio"]["paired_questions"] == len(
        questions
    )

    manifests = {p: str(await tools[0].ainvoke({"patient_id": p})) for p in {q.patient_id for q in questions}}
    gold = await gold_examples(questions, GoldCallRunner(tools), tools, manifests)
    trajectories = trajectory_examples(
        RunStore(tmp_path).finished().values(), {q.id: q for q in questions}, tools
    )
    assert len({e["metadata"]["question_id"] for e in trajectories}) == len(questions)
    paths = write_examples([*gold, *trajectories], tmp_path / "finetune", "ehrqa")
    lines = [json.loads(line) for path in paths.values() for line in path.read_text().splitlines()]
    assert len(lines) == len(gold) + len(trajectories)
    planner = next(
        e for e in lines if e["metadata"]["role"] == "planner" and e["metadata"]["source"] == "trajectory"
    )
    roles = [m["role"] for m in planner["messages"]]
    assert roles[0] == "system" and roles[-1] == "assistant" and set(roles) == {"system", "user", "assistant"}
    assert "### search_record" in planner["messages"][0]["content"]
    calls = [
        json.loads(c)
        for m in planner["messages"]
        if m["role"] == "assistant"
        for c in m["content"].splitlines()
    ]
    assert calls[0]["name"] == "record_manifest" and calls[-1]["name"] == "finish_retrieval"
    assert any(c["name"] == "search_record" for c in calls)
    assert any(m["content"].startswith("Result of search_record") for m in planner["messages"])
