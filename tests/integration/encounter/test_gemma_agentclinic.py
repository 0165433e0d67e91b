"""The real Gemma 3 270M in every AgentClinic role on three dev scenarios, through the CLI command.

A base model: the run proves the real path (loading, templating, generation, parsing, recording),
not diagnostic quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinicflow.cli.eval_agentclinic import agentclinic

REPO = Path(__file__).resolve().parents[3]
DEV = REPO.parent / "shared" / "data" / "agentclinic" / "agentclinic_medqa_dev.jsonl"


@pytest.mark.slow
@pytest.mark.heavy
def test_gemma_270m_in_every_role_completes_and_reports(tmp_path: Path) -> None:
    if not DEV.exists():
        pytest.skip(f"AgentClinic dev scenarios not found at {DEV}")
    model = pytest.importorskip("clinicflow.model", reason="clinicflow.model is not installed")
    if not hasattr(model, "load_chat_model"):
        pytest.skip("clinicflow.model.load_chat_model is not available")

    app = typer.Typer()
    app.command()(agentclinic)
    out = tmp_path / "run"
    args = [
        "--scenarios",
        str(DEV),
        "--limit",
        "3",
        "--turns",
        "3",
        "--max-new-tokens",
        "24",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["case_id"] for r in sorted(results, key=lambda r: r["case_id"])] == [
        "case-0001",
        "case-0002",
        "case-0003",
    ]
    for record in results:
        assert 1 <= record["turns"] <= 3
        assert isinstance(record["correct"], bool)
        transcript = [json.loads(x) for x in (out / record["transcript"]).read_text().splitlines()]
        roles = [u["role"] for u in transcript]
        assert roles[0] == "doctor" and roles[-1] == "moderator"
        assert roles.count("doctor") == record["turns"]
        assert {u["role"] for u in transcript[1:-1]} <= {"doctor", "patient", "measurement", "system"}
        assert all(u["text"] for u in transcript if u["role"] == "doctor")
    report = json.loads((out / "report.json").read_text())
    assert report["cases_finished"] == 3
    assert 0 <= report["accuracy"] <= 1
    assert (out / "report.md").read_text().startswith("# AgentClinic evaluation")
    assert (out / "report.png").stat().st_size > 0
    manifest = json.loads((out / "run.json").read_text())
    assert set(manifest["models"].values()) == {"default"}
