"""`clinicflow eval ehrqa` input errors: clear messages and exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinicflow.cli import eval_ehrqa
from clinicflow.cli.eval_ehrqa import ehrqa
from clinicflow.evals.ehrqa import retrieval
from clinicflow.evals.ehrqa.questions import Question, read_questions
from clinicflow.evals.ehrqa.records import RecordsError, RecordSet
from clinicflow.evals.ehrqa.retrieval import RetrievalReport
from clinicflow.fhir import loader, server


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


def test_check_retrieval_writes_the_questions_it_checks(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixture_records: RecordSet
) -> None:
    async def records(data: object, client: object, patients: object) -> RecordSet:
        return fixture_records

    async def all_hit(questions: list[Question], tools: object, on_miss: object) -> RetrievalReport:
        return RetrievalReport(checked=len(questions))

    monkeypatch.setattr(eval_ehrqa, "_records", records)
    monkeypatch.setattr(retrieval, "check_retrieval", all_hit)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["--fhir-url", "http://127.0.0.1:9/fhir", "--out", str(out), "--check-retrieval", "--split", "all"],
    )
    assert result.exit_code == 0, result.output
    written = read_questions(out / "questions.jsonl")
    assert written and all(q.answer for q in written)
    assert f"Questions and answer keys: {out / 'questions.jsonl'}" in result.output


def test_loading_prints_the_whole_load_summary(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixture_dir: Path
) -> None:
    summary = (
        "Loaded 10 resources from 2 files in 0.1 s (950 skipped, 0 duplicates merged).\n1 problems:\n  why"
    )

    class Server:
        def __init__(self, workdir: Path, port: int) -> None:
            self.db_path = workdir / "fhir.sqlite"
            self.base_url = "http://127.0.0.1:9/fhir"

        def start(self) -> None: ...

        def stop(self) -> None: ...

        def analyze(self) -> None: ...

    class Report:
        def summary(self) -> str:
            return summary

    async def load(client: object, data: Path, **kwargs: object) -> Report:
        return Report()

    async def no_records(data: object, client: object, patients: object) -> RecordSet:
        raise RecordsError("stop here")

    monkeypatch.setattr(server, "EmbeddedFhirServer", Server)
    monkeypatch.setattr(loader, "load_directory", load)
    monkeypatch.setattr(eval_ehrqa, "_records", no_records)
    result = CliRunner().invoke(
        app, ["--data", str(fixture_dir), "--out", str(tmp_path), "--check-retrieval"]
    )
    assert "950 skipped" in result.output
    assert "  why" in result.output
