"""The scripted model for dry runs: rules by bound tools, replies by turn, citations from the prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from clinicflow.api.scripted import load_scripted_model
from clinicflow.graphs.ehr_qa import build_ehr_qa_graph, run_ehr_qa
from tests.unit.graphs.record_tools import RecordTools


def _script(tmp_path: Path, **extra: object) -> Path:
    search = {"tool_calls": [{"name": "search", "args": {"q": "a1c"}}]}
    done = {"tool_calls": [{"name": "finish", "args": {}}]}
    answer = {"tool_calls": [{"name": "final_answer", "args": {"answer": "$line", "citations": ["$cite"]}}]}
    path = tmp_path / "script.json"
    path.write_text(
        json.dumps(
            {
                "rules": [
                    {"tools": ["search"], "replies": [search, done]},
                    {"tools": ["final_answer"], "replies": [answer]},
                ]
            }
            | extra
        )
    )
    return path


async def test_replies_follow_the_turn_and_fill_citations(tmp_path: Path) -> None:
    model = load_scripted_model(f"scripted:{_script(tmp_path)}")
    planner = model.bind_tools(
        [
            {"name": "search", "description": "s", "parameters": {"type": "object"}},
            {"name": "finish", "description": "f", "parameters": {"type": "object"}},
        ]
    )
    first = await planner.ainvoke([HumanMessage("question")])
    assert [c["name"] for c in first.tool_calls] == ["search"]
    history = [HumanMessage("question"), first, ToolMessage("x", tool_call_id=first.tool_calls[0]["id"])]
    assert [c["name"] for c in (await planner.ainvoke(history)).tool_calls] == ["finish"]

    answerer = model.bind_tools(
        [{"name": "final_answer", "description": "a", "parameters": {"type": "object"}}]
    )
    prompt = [
        SystemMessage("Cite like [Observation/example]."),
        HumanMessage("facts:\n- A1c 7.9 % [Observation/o1]"),
    ]
    reply = await answerer.ainvoke(prompt)
    assert reply.tool_calls[0]["args"] == {
        "answer": "- A1c 7.9 % [Observation/o1]",
        "citations": ["Observation/o1"],
    }
    assert isinstance(reply, AIMessage) and reply.usage_metadata and reply.usage_metadata["input_tokens"] > 0


def test_bad_scripts_fail_with_the_file_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read model script"):
        load_scripted_model(f"scripted:{tmp_path / 'missing.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": []}))
    with pytest.raises(ValueError, match=r"bad\.json is invalid"):
        load_scripted_model(f"scripted:{bad}")


async def test_it_drives_the_real_ehr_qa_graph(tmp_path: Path) -> None:
    path = tmp_path / "ehr.json"
    path.write_text(
        json.dumps(
            {
                "rules": [
                    {
                        "tools": ["search_record"],
                        "replies": [
                            {
                                "tool_calls": [
                                    {"name": "search_record", "args": {"resource_type": "Observation"}}
                                ]
                            },
                            {"tool_calls": [{"name": "finish_retrieval", "args": {}}]},
                        ],
                    },
                    {
                        "tools": ["record_facts"],
                        "replies": [
                            {
                                "tool_calls": [
                                    {
                                        "name": "record_facts",
                                        "args": {"facts": [{"text": "$line", "citations": ["$cite"]}]},
                                    }
                                ]
                            }
                        ],
                    },
                    {
                        "tools": ["final_answer"],
                        "replies": [
                            {
                                "tool_calls": [
                                    {
                                        "name": "final_answer",
                                        "args": {"answer": "$line", "citations": ["$cite"]},
                                    }
                                ]
                            }
                        ],
                    },
                ]
            }
        )
    )
    graph = build_ehr_qa_graph(load_scripted_model(f"scripted:{path}"), RecordTools().build())
    result = await run_ehr_qa(graph, "Latest A1c?", "pat-1")
    assert result.status == "answered" and result.citations
    assert set(result.citations) <= {c for e in result.evidence for c in e.citations}
