"""The example workflow of docs/workflows.md (`active_medications`, one folder plus one registry line), run
through the CLI (`clinicflow ask --workflow`) and the API (POST /v1/runs) against the embedded FHIR server.

It reads the patient in context only: every line cites an active MedicationRequest of that patient, and
every active one of the demo cohort is cited. It calls no model (the configured one does not exist)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clinicflow.api.app import create_app
from clinicflow.api.auth import create_api_key
from clinicflow.api.config import ApiSettings
from clinicflow.api.workflows import default_registry, register_examples
from clinicflow.cli import app
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.integration


def _active_in_cohort(cohort_dir: Path, patient_id: str) -> set[str]:
    found: set[str] = set()
    for path in cohort_dir.glob("*.json"):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        resources = [e["resource"] for e in bundle.get("entry", [])]
        if not any(r["resourceType"] == "Patient" and r["id"] == patient_id for r in resources):
            continue
        found |= {
            f"MedicationRequest/{r['id']}"
            for r in resources
            if r["resourceType"] == "MedicationRequest" and r.get("status") == "active"
        }
    return found


def _patient_with_active(cohort_dir: Path, patient_ids: list[str]) -> tuple[str, set[str]]:
    return max(((p, _active_in_cohort(cohort_dir, p)) for p in patient_ids), key=lambda item: len(item[1]))


def _check(result: dict[str, Any], patient_id: str, expected: set[str], fhir_base_url: str) -> None:
    assert result["patient_id"] == patient_id
    cited = result["citations"]
    assert expected and expected <= set(cited)
    assert all(f"[{c}]" in result["answer"] for c in cited)
    for citation in cited:
        resource = httpx.get(f"{fhir_base_url}/{citation}").json()
        assert resource["status"] == "active"
        assert resource["subject"]["reference"] == f"Patient/{patient_id}"


def test_the_example_runs_through_the_cli(
    fhir_base_url: str,
    cohort_dir: Path,
    patient_ids: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLINICFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CLINICFLOW_FHIR_URL", fhir_base_url)
    monkeypatch.setenv("CLINICFLOW_MODEL", str(tmp_path / "no-model-here"))
    patient_id, expected = _patient_with_active(cohort_dir, patient_ids)
    result = CliRunner().invoke(app, ["ask", "--workflow", "active_medications", "--patient", patient_id])
    assert result.exit_code == 0, result.output
    _check(json.loads(result.output), patient_id, expected, fhir_base_url)


def test_an_unknown_workflow_is_named_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFLOW_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["ask", "--workflow", "no_such_flow", "--patient", "p1"])
    assert result.exit_code == 2, result.output
    assert "Unknown workflow 'no_such_flow'" in result.output and "active_medications" in result.output


@pytest.fixture
def api(tmp_path: Path, fhir_base_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    database_url = f"sqlite:///{tmp_path}/api.sqlite"
    token = create_api_key("admin", ["workflow:*", "read", "patient:*"], database_url=database_url).token
    settings = ApiSettings(  # type: ignore[call-arg]
        cache_dir=tmp_path,
        database_url=database_url,
        checkpoint_db=tmp_path / "checkpoints.sqlite",
        fhir_url=fhir_base_url,
    )
    registry = default_registry()
    register_examples(registry)
    with TestClient(create_app(settings, model=ScriptedChatModel(), registry=registry)) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_the_example_runs_through_the_api(
    api: tuple[TestClient, dict[str, str]], fhir_base_url: str, cohort_dir: Path, patient_ids: list[str]
) -> None:
    client, auth = api
    patient_id, expected = _patient_with_active(cohort_dir, patient_ids)
    body = {"workflow": "active_medications", "input": {"patient_id": patient_id}}
    created = client.post("/v1/runs", json=body, headers=auth)
    assert created.status_code == 201, created.text
    run = created.json()
    deadline = time.monotonic() + 30
    while run["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
        run = client.get(f"/v1/runs/{run['id']}", headers=auth).json()
    assert run["status"] == "completed", run
    _check(run["result"], patient_id, expected, fhir_base_url)
    assert run["result"]["provenance"]["resourceType"] == "Provenance"
