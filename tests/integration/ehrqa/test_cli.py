"""`clinicflow eval ehrqa --data DIR --check-retrieval`: embedded server, load, oracle check, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinicflow.cli import eval_ehrqa
from clinicflow.evals.ehrqa.questions import GoldCall, Question


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command()(eval_ehrqa.ehrqa)
    return app


def test_check_retrieval_on_synthea_bundles(app: typer.Typer, synthea_dir: Path, tmp_path: Path) -> None:
    args = ["--data", str(synthea_dir), "--out", str(tmp_path), "--check-retrieval"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("Oracle retrieval hit rate: 100.0%")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "Loaded" not in again.output


def test_a_miss_is_named_and_exits_nonzero(
    app: typer.Typer, synthea_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate = eval_ehrqa.generate_questions

    def with_a_bad_question(*args: object, **kwargs: object) -> list[Question]:
        questions = generate(*args, **kwargs)  # type: ignore[arg-type]
        bad = questions[0].model_copy(
            update={
                "id": "qbroken",
                "gold_ids": ["Observation/not-there"],
                "gold_calls": [GoldCall(resource_type="Observation", code="29463-7")],
            }
        )
        return [bad, *questions]

    monkeypatch.setattr(eval_ehrqa, "generate_questions", with_a_bad_question)
    result = CliRunner().invoke(
        app, ["--data", str(synthea_dir), "--out", str(tmp_path), "--check-retrieval"]
    )
    assert result.exit_code == 1
    assert "MISS qbroken" in result.output and "Observation/not-there" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Oracle retrieval hit rate:") and "100.0%" not in last
