"""`clinicflow model` reports a bad model as one readable line and exit code 2."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from clinicflow.cli.model import model_app


def test_a_missing_model_folder_exits_2_without_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(model_app, ["chat", "Hi", "--model", str(tmp_path / "medgemma")])
    assert result.exit_code == 2
    assert f"model folder {tmp_path / 'medgemma'}: does not exist" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_model_server_exits_2_naming_it() -> None:
    result = CliRunner().invoke(model_app, ["chat", "Hi", "--model-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 2
    assert "cannot reach the model server at http://127.0.0.1:9/v1/chat/completions" in result.output
