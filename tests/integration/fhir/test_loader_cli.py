"""`clinicflow fhir load` against a real embedded server: counts, errors, exit codes, ANALYZE."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinicflow.cli.fhir import fhir_app
from clinicflow.fhir.demo import free_port
from clinicflow.fhir.server import EmbeddedFhirServer

pytestmark = pytest.mark.integration


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(fhir_app, name="fhir")
    return app


def test_load_prints_counts_errors_and_exits_1_when_something_was_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLINICFLOW_FHIR_URL", raising=False)
    folder = tmp_path / "data"
    folder.mkdir()
    good = [{"resourceType": "Patient", "id": f"p{i}", "gender": "other"} for i in range(3)]
    (folder / "Patient.ndjson").write_text("\n".join(json.dumps(p) for p in good))
    with EmbeddedFhirServer(tmp_path / "server", port=free_port()) as server:
        runner = CliRunner()
        args = [
            "fhir",
            "load",
            str(folder),
            "--fhir-url",
            server.base_url,
            "--data-dir",
            str(server.data_dir),
        ]
        ok = runner.invoke(_app(), args)
        assert ok.exit_code == 0, ok.output
        assert "Loaded 3 resources from 1 files" in ok.output
        assert "Patient" in ok.output
        with sqlite3.connect(server.db_path) as conn:
            assert conn.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0] > 0

        (folder / "Observation.ndjson").write_text(
            '{"resourceType": "Observation", "id": "x", "status": "final"}\n'
        )
        bad = runner.invoke(_app(), args)
        assert bad.exit_code == 1
        assert "Loaded 3 resources from 2 files" in bad.output
        assert "Observation.ndjson: line 1: Invalid FHIR R4 Observation" in bad.output
        assert "Traceback" not in bad.output
