"""`clinicflow ask` on bad input: a clear message and exit code 2, never a traceback or a model load."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicflow.cli import app
from clinicflow.fhir.demo import free_port


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICFLOW_CACHE_DIR", str(tmp_path))
    # A model folder that does not exist: reaching the model would fail with a different message.
    monkeypatch.setenv("CLINICFLOW_MODEL", str(tmp_path / "no-model-here"))


def test_unknown_patient_is_named_with_exit_code_2(
    env: None, fhir_base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFLOW_FHIR_URL", fhir_base_url)
    result = CliRunner().invoke(app, ["ask", "--patient", "no-such-patient", "Any HbA1c?"])
    assert result.exit_code == 2, result.output
    assert "Patient 'no-such-patient' not found" in result.output
    assert fhir_base_url in result.output
    assert "Traceback" not in result.output
    assert "no-model-here" not in result.output


def test_unreachable_fhir_server_names_the_url(env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/fhir"
    monkeypatch.setenv("CLINICFLOW_FHIR_URL", url)
    monkeypatch.setenv("CLINICFLOW_FHIR_RETRIES", "0")
    result = CliRunner().invoke(app, ["ask", "--patient", "p1", "Any HbA1c?"])
    assert result.exit_code == 2, result.output
    assert url.rstrip("/") in result.output and "unreachable" in result.output
    assert "Traceback" not in result.output


def test_bad_model_folder_is_named_after_the_patient_check(
    env: None, fhir_base_url: str, patient_ids: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFLOW_FHIR_URL", fhir_base_url)
    result = CliRunner().invoke(app, ["ask", "--patient", patient_ids[0], "Any HbA1c?"])
    assert result.exit_code == 2, result.output
    assert str(tmp_path / "no-model-here") in result.output
    assert "Traceback" not in result.output
