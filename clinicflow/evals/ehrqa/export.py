"""Fine-tuning data: successful agentic trajectories and gold question-answer pairs as chat-format JSONL.

Each line is `{"messages": [...], "metadata": {...}}`, one example per graph role (planner, extractor,
answerer), with roles system / user / assistant. The turns are rendered by the model layer's own
`chat_turns` with its tool section, so they are exactly what the model sees at inference: tool calls are
assistant content in the project's tool-call JSON (`{"name": ..., "arguments": {...}}`), tool results are
user turns ("Result of search_record (...)"). The last assistant turn is the target. Gold examples replay
the gold calls through the real tools; files are written per split so test questions never reach training.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.tools import BaseTool

from clinicflow.agents.ehr_qa import (
    ANSWERER,
    EXTRACTOR,
    FINISH_TOOL_NAME,
    PLANNER,
    Fact,
    Role,
    answerer_messages,
    citations_in,
    extractor_messages,
    planner_messages,
)
from clinicflow.evals.ehrqa.questions import GoldCall, Question
from clinicflow.evals.ehrqa.retrieval import SEARCH_TOOL, GoldCallRunner
from clinicflow.model.prompting import chat_turns
from clinicflow.model.tool_calls import format_call, tool_prompt, tool_specs

__all__ = ["MANIFEST_TOOL", "gold_examples", "tool_call_json", "trajectory_examples", "write_examples"]

MANIFEST_TOOL = "record_manifest"
_CONTINUE = {"role": "user", "content": "Continue."}


def tool_call_json(name: str, arguments: Mapping[str, Any]) -> str:
    """One tool call in the project's tool-call JSON format."""
    return format_call(name, dict(arguments))


def _call(name: str, args: Mapping[str, Any], call_id: str) -> ToolCall:
    return ToolCall(name=name, args=dict(args), id=call_id, type="tool_call")


def _turns(messages: list[BaseMessage], role: Role, tools: Sequence[BaseTool]) -> list[dict[str, str]]:
    """Chat turns as the model layer renders them for this role, ending with the target reply."""
    specs = tool_specs(role.tools(tools) if role is PLANNER else role.tools())
    turns = chat_turns(messages, tool_prompt(specs, role.tool_choice))
    if turns and turns[-1] == _CONTINUE:
        turns.pop()
    return turns


def _meta(question: Question, role: str, source: str) -> dict[str, Any]:
    return {
        "question_id": question.id,
        "patient_id": question.patient_id,
        "category": question.category,
        "qtype": question.qtype,
        "split": question.split,
        "role": role,
        "source": source,
    }


def _examples(
    question: Question,
    history: list[BaseMessage],
    evidence: Sequence[str],
    facts: Sequence[Fact],
    answer: str,
    citations: Sequence[str],
    tools: Sequence[BaseTool],
    source: str,
) -> list[dict[str, Any]]:
    """Planner, extractor and answerer examples; the graph calls the last two only when they have input."""
    planner = planner_messages(question.text, history)
    out: list[dict[str, Any]] = [
        {"messages": _turns(planner, PLANNER, tools), "metadata": _meta(question, PLANNER.name, source)}
    ]
    if evidence:
        facts_args: dict[str, Any] = {"facts": [f.model_dump() for f in facts]}
        reply = AIMessage("", tool_calls=[_call(str(EXTRACTOR.output_tool_name), facts_args, "facts")])
        messages = [*extractor_messages(question.text, evidence), reply]
        out.append(
            {
                "messages": _turns(messages, EXTRACTOR, tools),
                "metadata": _meta(question, EXTRACTOR.name, source),
            }
        )
    if facts:
        answer_args: dict[str, Any] = {"answer": answer, "citations": list(citations)}
        reply = AIMessage("", tool_calls=[_call(str(ANSWERER.output_tool_name), answer_args, "answer")])
        messages = [*answerer_messages(question.text, facts), reply]
        out.append(
            {
                "messages": _turns(messages, ANSWERER, tools),
                "metadata": _meta(question, ANSWERER.name, source),
            }
        )
    return out


def _history(planner: Sequence[Mapping[str, Any]]) -> list[BaseMessage]:
    """The planner conversation back as messages, cut after its last tool-call reply."""
    history: list[BaseMessage] = []
    for i, m in enumerate(planner):
        if m["type"] == "ai" and m.get("tool_calls"):
            calls = [
                _call(c["name"], c["args"], c.get("id") or f"call_{i}_{j}")
                for j, c in enumerate(m["tool_calls"])
            ]
            history.append(AIMessage(m.get("content") or "", tool_calls=calls))
        elif m["type"] == "tool":
            history.append(
                ToolMessage(
                    m.get("content") or "",
                    name=m.get("name") or "tool",
                    tool_call_id=m.get("tool_call_id") or "",
                    status=m.get("status") or "success",
                )
            )
    while history and not isinstance(history[-1], AIMessage):
        history.pop()
    return history


def trajectory_examples(
    results: Iterable[Mapping[str, Any]], questions: Mapping[str, Question], tools: Sequence[BaseTool]
) -> list[dict[str, Any]]:
    """Examples from agentic runs scored correct: the planner's calls, the extractor's facts, the answer."""
    out: list[dict[str, Any]] = []
    for r in results:
        question = questions.get(str(r.get("question_id")))
        trajectory = r.get("trajectory")
        if r.get("mode") != "agentic" or not r.get("correct") or question is None or not trajectory:
            continue
        history = _history(trajectory.get("planner", []))
        if not any(isinstance(m, ToolMessage) for m in history):
            continue
        out += _examples(
            question,
            history,
            trajectory.get("evidence", []),
            [Fact.model_validate(f) for f in trajectory.get("facts", [])],
            str(r.get("answer") or ""),
            list(r.get("citations") or []),
            tools,
            "trajectory",
        )
    return out


async def by_name(call: GoldCall, names: Mapping[str, str], patient_id: str, run: GoldCallRunner) -> GoldCall:
    """The call searching by the concept's name instead of its code, when that finds the same resources.

    A small model copies a name from the question far more reliably than a code from the manifest.
    """
    name = names.get(call.code or "")
    if not name:
        return call
    words = call.model_copy(update={"code": name})
    by_code, by_words = await run(patient_id, call), await run(patient_id, words)
    return words if citations_in(by_code) == citations_in(by_words) else call


async def gold_examples(
    questions: Sequence[Question],
    run: GoldCallRunner,
    tools: Sequence[BaseTool],
    manifest: Mapping[str, str],
    code_names: Mapping[str, Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Examples from the gold calls and answers; `manifest` maps a patient id to its record_manifest text.

    With `code_names` (patient id -> code -> name), a gold call by code becomes one by name wherever
    both find the same resources.
    """
    out: list[dict[str, Any]] = []
    for q in questions:
        names = (code_names or {}).get(q.patient_id, {})
        gold_calls = [await by_name(c, names, q.patient_id, run) for c in q.gold_calls]
        history: list[BaseMessage] = [
            AIMessage("", tool_calls=[_call(MANIFEST_TOOL, {}, f"call_{MANIFEST_TOOL}")]),
            ToolMessage(
                manifest.get(q.patient_id, ""), name=MANIFEST_TOOL, tool_call_id=f"call_{MANIFEST_TOOL}"
            ),
        ]
        calls = [_call(SEARCH_TOOL, c.tool_args(), f"gold_{i}") for i, c in enumerate(gold_calls)]
        history.append(AIMessage("", tool_calls=calls))
        evidence: list[str] = []
        for call, gold in zip(calls, gold_calls, strict=True):
            output = await run(q.patient_id, gold)
            history.append(ToolMessage(output, name=SEARCH_TOOL, tool_call_id=str(call["id"])))
            evidence += [line.strip() for line in output.splitlines() if citations_in(line)]
        history.append(AIMessage("", tool_calls=[_call(FINISH_TOOL_NAME, {}, "finish")]))
        evidence = list(dict.fromkeys(evidence))
        gold_ids = set(q.gold_ids)
        facts = [
            Fact(text=_strip_citations(line), citations=[c for c in citations_in(line) if c in gold_ids])
            for line in evidence
            if gold_ids & set(citations_in(line))
        ]
        out += _examples(q, history, evidence, facts, q.answer_text, q.gold_ids, tools, "gold")
    return out


def _strip_citations(line: str) -> str:
    for citation in citations_in(line):
        line = line.replace(f"[{citation}]", "")
    return " ".join(line.split())


def write_examples(examples: Iterable[Mapping[str, Any]], out_dir: Path, stem: str) -> dict[str, Path]:
    """Write examples to `<stem>_<split>.jsonl` files; returns the paths per split."""
    out_dir.mkdir(parents=True, exist_ok=True)
    handles: dict[str, Any] = {}
    paths: dict[str, Path] = {}
    try:
        for example in examples:
            split = str(example["metadata"].get("split") or "all")
            if split not in handles:
                paths[split] = out_dir / f"{stem}_{split}.jsonl"
                handles[split] = paths[split].open("w", encoding="utf-8")
            handles[split].write(json.dumps(example, ensure_ascii=False) + "\n")
    finally:
        for handle in handles.values():
            handle.close()
    return paths
