"""Oracle retrieval check and fine-tuning export, over a fake search tool that cites what it is asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import InjectedState

from clinicflow.agents.ehr_qa import PLANNER
from clinicflow.evals.ehrqa.export import gold_examples, tool_call_json, trajectory_examples, write_examples
from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.retrieval import GoldCallRunner, check_retrieval


def _tools(questions: list[Question], *, drop: str | None = None) -> list[BaseTool]:
    """A search tool answering each gold call with lines citing the question's gold ids."""
    by_call: dict[str, list[str]] = {}
    for q in questions:
        for call in q.gold_calls:
            key = json.dumps(call.tool_args(), sort_keys=True)
            by_call.setdefault(key, [])
            if not call.expect_absent:
                by_call[key] += [g for g in q.gold_ids if g != drop]

    @tool
    def search_record(
        resource_type: str,
        patient_id: Annotated[str, InjectedState("patient_id")],
        code: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
    ) -> str:
        """Search."""
        args = {"resource_type": resource_type, "code": code, "date_from": date_from, "date_to": date_to}
        key = json.dumps({k: v for k, v in args.items() if v is not None}, sort_keys=True)
        ids = sorted(set(by_call.get(key, [])))
        if not ids:
            return "No resources found in the record (not found in the record)."
        return "\n".join(f"2020-01-01 something [{i}]" for i in ids)

    return [search_record]


async def test_oracle_check_hits_and_names_misses(all_questions: list[Question]) -> None:
    questions = all_questions[:40]
    report = await check_retrieval(questions, _tools(questions))
    assert report.hit_rate == 1.0 and report.calls > 0
    victim = next(q for q in questions if q.gold_ids)
    seen: list[str] = []
    report = await check_retrieval(
        questions, _tools(questions, drop=victim.gold_ids[0]), on_miss=lambda m: seen.append(str(m))
    )
    assert report.misses and any(m.question_id == victim.id for m in report.misses)
    assert any(victim.id in line and victim.gold_ids[0] in line for line in seen)
    assert "hit rate" in report.summary()


async def test_gold_and_trajectory_examples(tmp_path: Path, all_questions: list[Question]) -> None:
    questions = [q for q in all_questions if q.qtype in ("obs_latest", "cond_exists")][:4]
    tools = _tools(questions)
    examples = await gold_examples(
        questions, GoldCallRunner(tools), tools, {questions[0].patient_id: "manifest"}
    )
    roles = {e["metadata"]["role"] for e in examples}
    assert roles == {"planner", "extractor", "answerer"}
    for example in examples:
        assert example["messages"][0]["role"] == "system"
        assert {m["role"] for m in example["messages"]} <= {"system", "user", "assistant"}
        assert example["messages"][-1]["role"] == "assistant"
    planner = next(e for e in examples if e["metadata"]["role"] == "planner")["messages"]
    assert (
        planner[0]["content"].startswith(PLANNER.system_prompt)
        and "### search_record" in planner[0]["content"]
    )
    assert planner[3]["content"].startswith("Result of record_manifest")
    first_call = json.loads(planner[4]["content"].splitlines()[0])
    assert (
        first_call["name"] == "search_record"
        and first_call["arguments"] == questions[0].gold_calls[0].tool_args()
    )
    answer = next(
        e
        for e in examples
        if e["metadata"]["role"] == "answerer" and e["metadata"]["question_id"] == questions[0].id
    )
    payload = json.loads(answer["messages"][-1]["content"])
    assert payload["name"] == "final_answer" and payload["arguments"]["answer"] == questions[0].answer_text

    q = questions[0]
    result: dict[str, Any] = {
        "question_id": q.id,
        "mode": "agentic",
        "correct": True,
        "answer": q.answer_text,
        "citations": q.gold_ids,
        "trajectory": {
            "planner": [
                {"type": "ai", "content": "", "tool_calls": [{"name": "record_manifest", "args": {}}]},
                {"type": "tool", "name": "record_manifest", "content": "manifest"},
                {
                    "type": "ai",
                    "content": "",
                    "tool_calls": [{"name": "search_record", "args": q.gold_calls[0].tool_args()}],
                },
                {"type": "tool", "name": "search_record", "content": f"line [{q.gold_ids[0]}]"},
                {"type": "ai", "content": "", "tool_calls": [{"name": "finish_retrieval", "args": {}}]},
            ],
            "evidence": [f"line [{q.gold_ids[0]}]"],
            "facts": [{"text": "line", "citations": q.gold_ids[:1]}],
        },
    }
    wrong = {**result, "question_id": questions[1].id, "correct": False}
    trajectories = trajectory_examples([result, wrong], {x.id: x for x in questions}, tools)
    assert {e["metadata"]["question_id"] for e in trajectories} == {q.id}
    assert trajectories[0]["messages"][-1]["content"] == tool_call_json("finish_retrieval", {})
    paths = write_examples([*examples, *trajectories], tmp_path, "ft")
    assert set(paths) == {q.split}
    assert sum(1 for _ in paths[q.split].open()) == len(examples) + len(trajectories)
