"""`clinicflow eval agentclinic`: options, YAML run file, model specs, and clean errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from typer.testing import CliRunner

from clinicflow.cli.eval_agentclinic import agentclinic
from clinicflow.evals.agentclinic import (
    SHIPPED_SCENARIOS,
    ModelLoadError,
    ModelSpec,
    ModelSpecError,
    RunFileError,
    load_config,
    load_role_models,
    parse_model_spec,
)
from clinicflow.evals.agentclinic import models as model_specs
from clinicflow.settings import Settings
from tests.unit.encounter.roles import role, system_text

SCENARIOS = SHIPPED_SCENARIOS / "clinicflow_osce.jsonl"


def _any_role(messages: list[BaseMessage]) -> str:
    system = system_text(messages)
    user = messages[-1].text
    if system.startswith("You are a doctor"):
        return "DIAGNOSIS READY: Acute appendicitis" if "Lower right side." in user else "Where is the pain?"
    if system.startswith("You are a patient"):
        return "Lower right side."
    if "measurement reader" in system:
        return "RESULTS: NORMAL READINGS"
    return "Yes" if "correct diagnosis: Acute appendicitis\n" in user else "No"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the model module's loader with one that records its arguments and returns a fake."""
    calls: list[dict[str, Any]] = []

    def load_chat_model(
        settings: Settings, *, model: str | None = None, model_url: str | None = None
    ) -> BaseChatModel:
        calls.append({"settings": settings, "model": model, "model_url": model_url})
        return role(_any_role)

    monkeypatch.setattr(model_specs, "_loader", lambda: load_chat_model)
    return calls


def _invoke(*args: str) -> Any:
    app = typer.Typer()
    app.command()(agentclinic)
    return CliRunner().invoke(app, list(args))


def test_cli_runs_resumes_and_reports(tmp_path: Path, loads: list[dict[str, Any]]) -> None:
    out = tmp_path / "run"
    args = [
        "--scenarios",
        str(SCENARIOS),
        "--limit",
        "2",
        "--turns",
        "3",
        "--out",
        str(out),
        "--max-new-tokens",
        "32",
    ]
    first = _invoke(*args)
    assert first.exit_code == 0, first.output
    assert "cf-iron-deficiency: incorrect after 2 turn(s)" in first.output
    assert "cf-appendicitis: correct after 2 turn(s)" in first.output
    assert "accuracy 50.0% (1/2)" in first.output
    assert len(loads) == 1, "roles with the same spec share one loaded model"
    assert loads[0]["settings"].model is None and loads[0]["settings"].model_url is None
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["protocol"] == "original"
    assert manifest["max_new_tokens"] == 32 and manifest["generation"]["max_new_tokens"] == 32

    second = _invoke(*[a if a != "2" else "3" for a in args])
    assert second.exit_code == 0, second.output
    assert "1 run now, 2 already finished" in second.output
    report = json.loads((out / "report.json").read_text())
    assert report["cases_finished"] == 3
    assert sorted(p.name for p in (out / "transcripts").iterdir()) == [
        "cf-appendicitis.jsonl",
        "cf-hypothyroidism.jsonl",
        "cf-iron-deficiency.jsonl",
    ]


def test_cli_reads_a_yaml_run_file_and_flags_override_it(tmp_path: Path, loads: list[dict[str, Any]]) -> None:
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        f"scenarios: {SCENARIOS}\nout: out\nturns: 2\nlimit: 1\n"
        "models:\n  doctor: default\n  moderator: default\n"
        "protocol: clinicflow\npatient-bias: recency\n"
    )
    result = _invoke("--config", str(run_file), "--turns", "4", "--doctor-bias", "confirmation")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["turns"] == 4 and manifest["protocol"] == "clinicflow"
    assert manifest["doctor_bias"] == "confirmation" and manifest["patient_bias"] == "recency"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--doctor-bias", "anchoring"], "valid doctor biases: confirmation, cultural, education"),
        (["--patient-bias", "confirmation"], "self_diagnosis"),
        (["--doctor", "/no/such/folder"], "no such model folder"),
        (["--patient", "openai:localhost:8000"], "expected openai:http(s)://"),
        (["--protocol", "agentclinic"], "protocol: Input should be 'original' or 'clinicflow'"),
        (["--doctor-tools"], "doctor tools are a variant beyond AgentClinic"),
        (["--protocol", "clinicflow", "--doctor-image-request"], "image requests are AgentClinic's option"),
    ],
)
def test_cli_bad_options_fail_cleanly(
    tmp_path: Path, loads: list[dict[str, Any]], args: list[str], message: str
) -> None:
    result = _invoke("--scenarios", str(SCENARIOS), "--out", str(tmp_path / "o"), *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert loads == []


def test_cli_reports_missing_inputs(tmp_path: Path, loads: list[dict[str, Any]]) -> None:
    missing = _invoke("--out", str(tmp_path / "o"))
    assert missing.exit_code == 2 and "scenarios: Field required" in missing.output
    absent = _invoke("--scenarios", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o"))
    assert absent.exit_code == 2 and "scenario file not found" in absent.output


def test_cli_names_skipped_lines(tmp_path: Path, loads: list[dict[str, Any]]) -> None:
    scenarios = tmp_path / "s.jsonl"
    scenarios.write_text(SCENARIOS.read_text().splitlines()[0] + "\n{broken\n")
    result = _invoke("--scenarios", str(scenarios), "--turns", "1", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert f"skipped {scenarios} line 2: not valid JSON" in result.output


def test_cli_without_the_model_module_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Any:
        raise ModelLoadError("clinicflow.model.load_chat_model is not available: no module")

    monkeypatch.setattr(model_specs, "_loader", missing)
    result = _invoke("--scenarios", str(SCENARIOS), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "load_chat_model is not available" in result.output


def test_model_specs_parse_and_share(tmp_path: Path) -> None:
    assert parse_model_spec("default") == ModelSpec("default")
    assert parse_model_spec("openai:http://gpu:8000/v1/#medgemma-27b") == ModelSpec(
        "openai", "http://gpu:8000/v1", "medgemma-27b"
    )
    assert str(parse_model_spec("openai:https://h/v1")) == "openai:https://h/v1"
    assert parse_model_spec(str(tmp_path)) == ModelSpec("local", str(tmp_path.resolve()))
    with pytest.raises(ModelSpecError):
        parse_model_spec("openai:")

    seen: list[tuple[str | None, str | None, str]] = []

    def loader(
        settings: Settings, *, model: str | None = None, model_url: str | None = None
    ) -> BaseChatModel:
        seen.append((model, model_url, settings.model_name))
        return role(lambda m: "ok")

    settings = Settings(model_name="base", cache_dir=tmp_path)  # type: ignore[call-arg]
    specs = {
        "doctor": str(tmp_path),
        "patient": "openai:http://h/v1#gpt",
        "measurement": "openai:http://h/v1#gpt",
    }
    models, by_role = load_role_models(settings, {**specs, "moderator": "default"}, loader=loader)
    assert models.patient is models.measurement
    assert models.doctor is not models.patient and models.moderator is not models.doctor
    assert sorted(seen, key=str) == sorted(
        [(str(tmp_path.resolve()), None, "base"), (None, "http://h/v1", "gpt"), (None, None, "base")], key=str
    )
    assert by_role["patient"] == "openai:http://h/v1#gpt"
    with pytest.raises(ModelSpecError, match="moderator"):
        load_role_models(settings, specs, loader=loader)

    def failing(settings: Settings, **kwargs: Any) -> BaseChatModel:
        raise OSError("weights missing")

    with pytest.raises(ModelLoadError, match="could not load the doctor model"):
        load_role_models(settings, {**specs, "moderator": "default"}, loader=failing)


def test_run_file_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios: x.jsonl\nout: o\nturn: 3\n")
    with pytest.raises(RunFileError, match="turn: Extra inputs are not permitted"):
        load_config(bad, {})
    bad.write_text("- a list\n")
    with pytest.raises(RunFileError, match="mapping"):
        load_config(bad, {})
    bad.write_text("scenarios: [unclosed\n")
    with pytest.raises(RunFileError, match="not valid YAML"):
        load_config(bad, {})
    with pytest.raises(RunFileError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", {})
    config = load_config(None, {"scenarios": SCENARIOS, "out": tmp_path, "turns": None})
    assert config.turns == 20 and config.concurrency == 4 and config.doctor == "default"
