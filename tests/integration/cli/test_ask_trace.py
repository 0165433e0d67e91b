"""`clinicflow ask --trace-json`: the run's OpenTelemetry spans, printed by the real command against the
real embedded FHIR server (the model is scripted, so the test needs no model load)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicflow.agents.ehr_qa import FINISH_TOOL_NAME
from clinicflow.cli import app
from tests.fakes import ScriptedChatModel, calls, tool_call

pytestmark = pytest.mark.integration


def test_trace_json_is_the_span_tree_of_the_run(
    fhir_base_url: str, patient_ids: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CLINICFLOW_FHIR_URL", fhir_base_url)
    # The planner finishes at once and the extractor finds no fact: "not found in the record".
    model = ScriptedChatModel(
        script=[calls(tool_call(FINISH_TOOL_NAME)), calls(tool_call("record_facts", facts=[]))]
    )
    monkeypatch.setattr("clinicflow.cli.ask._load_model", lambda *args: model)
    out = tmp_path / "trace.json"
    result = CliRunner().invoke(
        app, ["ask", "--patient", patient_ids[0], "--thread", "cli-1", "--trace-json", str(out), "Any HbA1c?"]
    )
    assert result.exit_code == 0, result.output
    spans = json.loads(out.read_text())
    root = spans[0]
    assert (root["name"], root["parent_id"]) == ("invoke_agent ehr_qa", None)
    assert root["attributes"]["gen_ai.conversation.id"] == "cli-1"
    nodes = {s["span_id"]: s["name"] for s in spans if s["parent_id"] == root["span_id"]}
    assert set(nodes.values()) == {"plan", "retrieve", "extract", "answer"}
    calls_ = [s for s in spans if s["name"].startswith(("chat", "execute_tool"))]
    assert calls_ and all(s["parent_id"] in nodes for s in calls_)
    assert {s["attributes"].get("gen_ai.tool.name") for s in calls_} >= {
        "record_manifest",
        "finish_retrieval",
    }
    assert patient_ids[0] not in out.read_text() and "HbA1c" not in out.read_text()
