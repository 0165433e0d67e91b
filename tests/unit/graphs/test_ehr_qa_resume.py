"""An interrupted EHR QA run resumes from its SQLite checkpoint without redoing finished steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicflow.agents.ehr_qa import FINISH_TOOL_NAME
from clinicflow.graphs.ehr_qa import (
    EhrQaInputError,
    EhrQaRunError,
    build_ehr_qa_graph,
    open_checkpointer,
    resume_ehr_qa,
    run_ehr_qa,
)
from tests.fakes import ScriptedChatModel, calls, tool_call
from tests.unit.graphs.record_tools import RecordTools

QUESTION = "What was the most recent HbA1c?"
A1C = "Observation/obs-a1c-2"


def script(*, crash_on_second_call: bool) -> list[object]:
    crash = [RuntimeError("model server went away")] if crash_on_second_call else []
    return [
        calls(tool_call("search_record", resource_type="Observation", code="4548-4")),
        *crash,
        calls(tool_call(FINISH_TOOL_NAME)),
        calls(tool_call("record_facts", facts=[{"text": "A1c 7.9 %", "citations": [A1C]}])),
        calls(tool_call("final_answer", answer="7.9 %", citations=[A1C])),
    ]


async def test_rerun_with_the_same_thread_continues_from_the_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "runs" / "checkpoints.sqlite"
    tools = RecordTools()
    model = ScriptedChatModel(script=script(crash_on_second_call=True))

    async with open_checkpointer(db) as saver:
        graph = build_ehr_qa_graph(model, tools.build(), checkpointer=saver)
        with pytest.raises(EhrQaRunError, match="model server went away") as stopped:
            await run_ehr_qa(graph, QUESTION, "pat-1", thread_id="t-1")
    assert stopped.value.thread_id == "t-1"
    assert (len(model.calls), tools.patients_read) == (2, ["pat-1", "pat-1"])

    async with open_checkpointer(db) as saver:
        graph = build_ehr_qa_graph(model, tools.build(), checkpointer=saver)
        result = await run_ehr_qa(graph, QUESTION, "pat-1", thread_id="t-1")

    assert result.status == "answered" and result.citations == [A1C]
    assert len(model.calls) - 2 == 3, "only the failed planner step and the steps after it ran again"
    assert tools.patients_read == ["pat-1", "pat-1"], "manifest and search were not re-run"
    names = [e.name for e in result.trace]
    assert names.count("search_record") == 1 and names.count("record_manifest") == 1
    assert names[:3] == ["record_manifest", "planner", "search_record"], "the first run's trace is kept"

    fresh = ScriptedChatModel(script=script(crash_on_second_call=False))
    await run_ehr_qa(build_ehr_qa_graph(fresh, RecordTools().build()), QUESTION, "pat-1")
    assert len(fresh.calls) == 4 > 3


async def test_a_finished_thread_returns_its_result_and_refuses_another_question(tmp_path: Path) -> None:
    model = ScriptedChatModel(script=script(crash_on_second_call=False))
    async with open_checkpointer(tmp_path / "cp.sqlite") as saver:
        graph = build_ehr_qa_graph(model, RecordTools().build(), checkpointer=saver)
        first = await run_ehr_qa(graph, QUESTION, "pat-1", thread_id="t-2")
        again = await run_ehr_qa(graph, QUESTION, "pat-1", thread_id="t-2")
        resumed = await resume_ehr_qa(graph, "t-2")
        with pytest.raises(EhrQaInputError, match="holds another question"):
            await run_ehr_qa(graph, "Any allergies?", "pat-1", thread_id="t-2")
        with pytest.raises(EhrQaInputError, match="no checkpointed run"):
            await resume_ehr_qa(graph, "never-ran")

    assert len(model.calls) == 4
    assert again == first == resumed


async def test_resume_by_thread_id_alone(tmp_path: Path) -> None:
    model = ScriptedChatModel(script=script(crash_on_second_call=True))
    async with open_checkpointer(tmp_path / "cp.sqlite") as saver:
        graph = build_ehr_qa_graph(model, RecordTools().build(), checkpointer=saver)
        with pytest.raises(EhrQaRunError):
            await run_ehr_qa(graph, QUESTION, "pat-1", thread_id="t-3")
        result = await resume_ehr_qa(graph, "t-3")

    assert (result.question, result.patient_id, result.status) == (QUESTION, "pat-1", "answered")
