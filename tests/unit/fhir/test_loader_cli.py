"""`clinicflow fhir load` input errors: no traceback, a one-line message, exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinicflow.cli.fhir import fhir_app
from clinicflow.fhir.demo import free_port


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("CLINICFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CLINICFLOW_FHIR_URL", raising=False)
    return CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(fhir_app, name="fhir")
    return app


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "p.json").write_text(json.dumps({"resourceType": "Patient", "id": "p1"}))
    return folder


def test_unreachable_url_is_named_with_exit_code_2(runner: CliRunner, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/fhir"
    result = runner.invoke(_app(), ["fhir", "load", str(_folder(tmp_path)), "--fhir-url", url])
    assert result.exit_code == 2
    assert url in result.output and "unreachable" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_default_target_is_the_embedded_server_with_a_hint(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("CLINICFLOW_FHIR_PORT", str(port))
    result = runner.invoke(_app(), ["fhir", "load", str(_folder(tmp_path))])
    assert result.exit_code == 2
    assert f"http://127.0.0.1:{port}/fhir" in result.output
    assert "clinicflow fhir serve" in result.output


def test_missing_folder_and_bad_url_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    missing = runner.invoke(_app(), ["fhir", "load", str(tmp_path / "nope"), "--fhir-url", "http://x/fhir"])
    assert missing.exit_code == 2 and "No such file or folder" in missing.output
    bad = runner.invoke(_app(), ["fhir", "load", str(_folder(tmp_path)), "--fhir-url", "not a url"])
    assert bad.exit_code == 2 and "not a url" in bad.output
    assert "Traceback" not in missing.output + bad.output
