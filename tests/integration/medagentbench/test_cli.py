"""`clinicflow eval medagentbench`: the synthetic set end to end (embedded server, task set, run, report),
and a task file whose patients the server lacks (exit code 3, nothing run)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from clinicflow.cli.eval_medagentbench import PREFLIGHT_EXIT, medagentbench
from clinicflow.evals.medagentbench.tasks import MabTask, load_tasks, save_tasks


def test_synthetic_oracle_run_writes_tasks_results_and_report(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CLINICFLOW_FHIR_URL", raising=False)
    app = typer.Typer()
    app.command()(medagentbench)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["--synthetic", "10", "--agent", "oracle", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "protocol original; success: overall 100.0% (10/10" in result.output
    tasks = load_tasks(out / "tasks.json")
    assert sorted(t.task_type for t in tasks) == list(range(1, 11))
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["agent"] == "oracle" and report["run"]["tasks"].startswith("synthetic (10")
    assert report["protocol"] == "original"
    assert any("synthetic tasks" in d for d in report["differences_from_published"])
    assert len((out / "results.jsonl").read_text().splitlines()) == 10
    assert (out / "success_by_type.png").exists() and (out / "report.md").exists()


def test_a_task_file_whose_patients_the_server_lacks_exits_3(mab_server: str, tmp_path: Path) -> None:
    tasks = [
        MabTask(id=f"task2_{i}", instruction=f"What's the age of the patient with MRN of {m}?", eval_MRN=m)
        for i, m in enumerate(["S2874099", "S2380121"], 1)
    ]
    path = save_tasks(tasks, tmp_path / "test_data_v2.json")
    app = typer.Typer()
    app.command()(medagentbench)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["--tasks", str(path), "--fhir-url", mab_server, "--agent", "oracle", "--out", str(out)]
    )
    assert result.exit_code == PREFLIGHT_EXIT, result.output
    assert "lacks 2 of the 2 patients the tasks name (eval_MRN), e.g. S2380121, S2874099" in result.output
    assert "Traceback" not in result.output and not (out / "results.jsonl").exists()
