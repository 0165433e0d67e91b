"""`clinicflow eval medagentbench --synthetic N --agent oracle`: embedded server, task set, run, report."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from clinicflow.cli.eval_medagentbench import medagentbench
from clinicflow.evals.medagentbench.tasks import load_tasks


def test_synthetic_oracle_run_writes_tasks_results_and_report(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CLINICFLOW_FHIR_URL", raising=False)
    app = typer.Typer()
    app.command()(medagentbench)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["--synthetic", "10", "--agent", "oracle", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "success: overall 100.0% (10/10" in result.output
    tasks = load_tasks(out / "tasks.json")
    assert sorted(t.task_type for t in tasks) == list(range(1, 11))
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["agent"] == "oracle" and report["run"]["tasks"].startswith("synthetic (10")
    assert len((out / "results.jsonl").read_text().splitlines()) == 10
    assert (out / "success_by_type.png").exists() and (out / "report.md").exists()
