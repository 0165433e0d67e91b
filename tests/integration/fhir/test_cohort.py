"""PySynthea cohorts: deterministic per seed and reference date; `clinicflow fhir generate`."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinicflow.cli.fhir import fhir_app
from clinicflow.fhir.cohort import generate_cohort

pytestmark = pytest.mark.integration


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(fhir_app, name="fhir")
    return app


def test_api_and_command_with_the_same_seed_and_date_write_identical_bundles(tmp_path: Path) -> None:
    first = generate_cohort(
        tmp_path / "a", patients=1, seed=7, reference_date=date(2025, 6, 30), progress=False
    )
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [p.name for p in first]
    bundle = json.loads(first[0].read_text())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    resources = [e["resource"] for e in bundle["entry"]]
    assert {"Patient", "Encounter", "Observation", "Condition"} <= {r["resourceType"] for r in resources}
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    assert patient["birthDate"] <= "2025-06-30"

    out = tmp_path / "b"
    args = ["fhir", "generate", "-p", "1", "--seed", "7", "--out", str(out), "--reference-date", "2025-06-30"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "Wrote 1 bundles (seed 7, reference date 2025-06-30)" in result.output
    second = sorted(out.glob("*.json"))
    assert str(second[0]) in result.output
    assert [p.name for p in first] == [p.name for p in second]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_generate_rejects_a_bad_reference_date(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(), ["fhir", "generate", "--out", str(tmp_path), "--reference-date", "soon"]
    )
    assert result.exit_code == 2
    assert "not a date" in result.output
    assert not list(tmp_path.glob("*.json"))
