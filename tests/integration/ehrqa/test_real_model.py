"""The real CPU default model (Gemma 3 270M, a base model: quality aside) through both modes via the CLI,
on the demo cohort's smallest record: the report carries real token counts and the token ratio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinicflow.cli.eval_ehrqa import ehrqa

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def test_270m_both_modes_report_the_token_ratio(
    cohort_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = pytest.importorskip("clinicflow.model")
    if not hasattr(model, "load_chat_model"):
        pytest.skip("clinicflow.model has no load_chat_model yet")
    data = tmp_path / "data"
    data.mkdir()
    smallest = min(cohort_dir.glob("*.json"), key=lambda p: p.stat().st_size)
    shutil.copy(smallest, data / smallest.name)
    monkeypatch.setenv("CLINICFLOW_MAX_NEW_TOKENS", "32")
    app = typer.Typer()
    app.command()(ehrqa)
    out = tmp_path / "out"
    args = ["--data", str(data), "--out", str(out), "--mode", "both", "--limit", "1", "--max-steps", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    full, agentic = report["modes"]["full"], report["modes"]["agentic"]
    assert full["n"] == 1 and agentic["n"] == 1
    assert not full["tokens_estimated"] and not agentic["tokens_estimated"]
    assert report["full_context"]["did_not_fit"] == 0
    ratio = report["token_ratio"]["agentic_over_full"]
    assert ratio > 0
    assert f"token ratio agentic/full-context: {ratio:.3f}" in result.output
    print(result.output.strip().splitlines()[-4:], json.dumps(report["token_ratio"]))
