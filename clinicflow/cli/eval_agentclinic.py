"""`clinicflow eval agentclinic`: simulated patient encounters scored against AgentClinic scenarios."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from clinicflow.evals.agentclinic import ScenarioSet
    from clinicflow.evals.run_folder import RunSummary

__all__ = ["agentclinic"]

_SPEC = (
    "Model spec: default (the tuned Gemma 3 270M), a model folder or built-in name, or openai:URL[#model]."
)


def agentclinic(
    scenarios: Annotated[
        Path | None, typer.Option("--scenarios", help="Scenario JSONL (AgentClinic OSCE or NEJM format).")
    ] = None,
    doctor: Annotated[str | None, typer.Option(help=f"Doctor model. {_SPEC}")] = None,
    patient: Annotated[str | None, typer.Option(help=f"Patient model. {_SPEC}")] = None,
    measurement: Annotated[str | None, typer.Option(help=f"Measurement model. {_SPEC}")] = None,
    moderator: Annotated[str | None, typer.Option(help=f"Moderator model. {_SPEC}")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Run only the first N scenarios.")] = None,
    turns: Annotated[
        int | None, typer.Option(min=1, help="Doctor turns allowed per case [default: 20].")
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            help="original: AgentClinic's own rules (for figures beside published ones); clinicflow: the "
            "project's tolerant variant [default: original]."
        ),
    ] = None,
    doctor_bias: Annotated[
        str | None, typer.Option("--doctor-bias", help="AgentClinic doctor bias by name, e.g. recency.")
    ] = None,
    patient_bias: Annotated[
        str | None,
        typer.Option("--patient-bias", help="AgentClinic patient bias by name, e.g. self_diagnosis."),
    ] = None,
    image_request: Annotated[
        bool | None,
        typer.Option(
            "--doctor-image-request/--no-doctor-image-request",
            help="NEJM cases, original protocol: the doctor gets the image only after REQUEST IMAGES.",
        ),
    ] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Cases run at once [default: 4].")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder; rerun into it to resume.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML run file with these options; flags override it.")
    ] = None,
    doctor_tools: Annotated[
        bool | None,
        typer.Option(
            "--doctor-tools/--no-doctor-tools",
            help="Variant beyond AgentClinic (protocol clinicflow): the doctor may call guideline and "
            "FHIR tools.",
        ),
    ] = None,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-new-tokens",
            min=1,
            help="Token limit per model reply [default: the protocol's, 200 original].",
        ),
    ] = None,
) -> None:
    """Run AgentClinic encounters (doctor, patient, measurement, moderator) and write a report.

    Finished cases are recorded as they end; rerunning the same command resumes an interrupted eval.
    The report states the protocol, every role's model and how the setup differs from the published one.
    """
    from clinicflow.evals.agentclinic import load_config, run_from_config
    from clinicflow.settings import Settings

    overrides: dict[str, Any] = {
        "scenarios": scenarios,
        "doctor": doctor,
        "patient": patient,
        "measurement": measurement,
        "moderator": moderator,
        "limit": limit,
        "turns": turns,
        "protocol": protocol,
        "doctor_bias": doctor_bias,
        "patient_bias": patient_bias,
        "image_request": image_request,
        "concurrency": concurrency,
        "out": out,
        "doctor_tools": doctor_tools,
        "max_new_tokens": max_new_tokens,
    }
    expected = _expected_errors()
    try:
        run_config = load_config(config, overrides)
    except expected as exc:
        _fail(str(exc))
    progress = _Progress(run_config.out)
    try:
        settings = Settings()  # type: ignore[call-arg]  # fields come from the environment
        run = asyncio.run(
            run_from_config(run_config, settings, on_case=progress.case, on_loaded=progress.loaded)
        )
    except expected as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted; rerun the same command to resume from {run_config.out}", err=True)
        raise typer.Exit(130) from None
    _print_summary(run.summary)


def _expected_errors() -> tuple[type[Exception], ...]:
    """The failures reported in one line (exit status 2), not as a traceback."""
    from clinicflow.agents.encounter import ProtocolOptionError, UnknownBiasError
    from clinicflow.evals.agentclinic import (
        DoctorToolsError,
        ModelLoadError,
        ModelSpecError,
        RunConfigMismatchError,
        RunFileError,
        ScenarioFileError,
    )

    return (
        RunFileError,
        ScenarioFileError,
        ProtocolOptionError,
        UnknownBiasError,
        ModelSpecError,
        ModelLoadError,
        RunConfigMismatchError,
        DoctorToolsError,
    )


class _Progress:
    """The lines printed while a run goes: what was loaded, then each finished case."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.finished = 0

    def loaded(self, loaded: ScenarioSet, notes: list[str]) -> None:
        for error in loaded.errors:
            typer.echo(f"skipped {loaded.path} {error}", err=True)
        for note in notes:
            typer.echo(f"note: {note}", err=True)
        typer.echo(f"{len(loaded.cases)} scenario(s) from {loaded.path}; output in {self.out}")

    def case(self, result: dict[str, Any]) -> None:
        self.finished += 1
        verdict = "correct" if result["correct"] else "incorrect"
        typer.echo(
            f"[{self.finished}] {result['case_id']}: {verdict} after {result['turns']} turn(s); "
            f"diagnosis {result['diagnosis']!r}, expected {result['correct_diagnosis']!r}"
        )


def _print_summary(summary: RunSummary) -> None:
    """Failures, accuracy and where the report is; exit status 1 when a case failed."""
    report = summary.report
    for failure in summary.failures:
        typer.echo(f"failed {failure['case_id']}: {failure['error']} (retried on rerun)", err=True)
    accuracy = report["accuracy"]
    if accuracy is not None:
        low, high = report["accuracy_ci95"]
        typer.echo(
            f"accuracy {100 * accuracy:.1f}% ({report['correct']}/{report['cases_finished']}), "
            f"95% CI {100 * low:.1f}-{100 * high:.1f}%; mean turns {report['mean_turns']:.2f}; "
            f"{summary.ran} run now, {summary.skipped} already finished"
        )
    typer.echo(f"report: {summary.paths['markdown']}")
    if summary.failures:
        raise typer.Exit(1)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


if __name__ == "__main__":
    typer.run(agentclinic)
