"""`clinicflow eval ehrqa` input errors: clear messages and exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinicflow.cli.eval_ehrqa import ehrqa


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command()(ehrqa)
    return app


def test_missing_data_folder(app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINICFLOW_FHIR_URL", raising=False)
    result = CliRunner().invoke(
        app, ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "--check-retrieval"]
    )
    assert result.exit_code == 2
    assert "No such file or folder" in result.output
    assert "Traceback" not in result.output


def test_no_source(app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINICFLOW_FHIR_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["--out", str(tmp_path / "out"), "--check-retrieval"])
    assert result.exit_code == 2
    assert "--data" in result.output and "--fhir-url" in result.output


def test_unreachable_server(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["--fhir-url", "http://127.0.0.1:9/fhir", "--out", str(tmp_path), "--check-retrieval"]
    )
    assert result.exit_code == 2
    assert "127.0.0.1:9" in result.output
