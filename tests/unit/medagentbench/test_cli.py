"""`clinicflow eval medagentbench` argument checks (no server, no model)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from clinicflow.cli.eval_medagentbench import medagentbench

app = typer.Typer()
app.command()(medagentbench)
runner = CliRunner()


def test_tasks_or_synthetic_is_required(monkeypatch) -> None:
    monkeypatch.delenv("CLINICFLOW_FHIR_URL", raising=False)
    result = runner.invoke(app, ["--agent", "oracle"])
    assert result.exit_code == 2 and "either --tasks FILE or --synthetic N" in result.output


def test_a_task_file_needs_a_fhir_url(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CLINICFLOW_FHIR_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "t.json"
    path.write_text("[]")
    result = runner.invoke(app, ["--tasks", str(path), "--agent", "oracle"])
    assert result.exit_code == 2 and "--fhir-url" in result.output


def test_a_bad_task_file_is_reported_without_a_traceback(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "t.json"
    path.write_text('[{"id": "task2_1"}]')
    result = runner.invoke(
        app, ["--tasks", str(path), "--fhir-url", "http://127.0.0.1:9/fhir", "--agent", "oracle"]
    )
    assert result.exit_code == 2 and "task 0" in result.output and "Traceback" not in result.output


def test_unknown_agent_is_refused() -> None:
    result = runner.invoke(app, ["--synthetic", "3", "--agent", "human"])
    assert result.exit_code == 2


def test_unknown_protocol_is_refused() -> None:
    result = runner.invoke(app, ["--synthetic", "3", "--agent", "oracle", "--protocol", "lenient"])
    assert result.exit_code == 2


def test_the_tool_graph_cannot_be_scored_by_the_original_protocol(monkeypatch) -> None:
    monkeypatch.delenv("CLINICFLOW_FHIR_URL", raising=False)
    result = runner.invoke(app, ["--synthetic", "3", "--agent", "tools", "--protocol", "original"])
    assert result.exit_code == 2 and "use --protocol clinicflow" in result.output
