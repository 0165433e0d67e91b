"""`clinicflow eval medagentbench`: MedAgentBench tasks on any FHIR base URL, or an offline synthetic set.

`--protocol original` (the default, but for `--agent tools`) follows the published evaluation's rules;
`--protocol clinicflow` is clinicflow's variant (docs/CONTRACTS.md).

Exit codes: 0 the eval ran (whatever the score); 2 bad input, or a FHIR server or model that cannot be
reached or loaded; 3 the FHIR server lacks patients the tasks name (nothing was run).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from clinicflow.evals.medagentbench.runner import EvalRun
    from clinicflow.evals.medagentbench.tasks import MabTask
    from clinicflow.fhir import FhirClient
    from clinicflow.settings import Settings

__all__ = ["PREFLIGHT_EXIT", "AgentChoice", "ProtocolChoice", "medagentbench"]

PREFLIGHT_EXIT = 3


class AgentChoice(StrEnum):
    """Who does the tasks."""

    text = "text"
    tools = "tools"
    oracle = "oracle"


class ProtocolChoice(StrEnum):
    """Whose rules parse and score the run."""

    original = "original"
    clinicflow = "clinicflow"


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _load_model(settings: Settings, model: str | None, model_url: str | None) -> BaseChatModel:
    from clinicflow.model import ModelError, load_chat_model

    try:
        return load_chat_model(settings, model=model, model_url=model_url)
    except ModelError as exc:
        _fail(str(exc))


@contextlib.asynccontextmanager
async def _server(settings: Settings, fhir_url: str | None, out: Path) -> AsyncIterator[str]:
    from clinicflow.evals.medagentbench.runner import synthetic_server

    if fhir_url:
        yield fhir_url
        return
    typer.echo("Starting the embedded FHIR server on a private copy of the demo cohort ...")
    async with synthetic_server(settings.cache_dir, out / "fhir-server") as url:
        yield url


@dataclass(frozen=True)
class _Choices:
    """What one `eval medagentbench` was asked to run (the command's options)."""

    tasks_path: Path | None
    synthetic: int | None
    fhir_url: str | None
    agent: AgentChoice
    protocol: ProtocolChoice | None
    funcs: Path | None
    out: Path
    model: str | None
    model_url: str | None
    max_rounds: int
    max_response_chars: int | None
    limit: int | None
    seed: int
    now: str | None


async def _synthetic_tasks(client: FhirClient, choices: _Choices, base_url: str) -> list[MabTask]:
    """A synthetic task set made on the server's patients, saved in the output folder."""
    from clinicflow.evals.medagentbench.runner import synthetic_tasks
    from clinicflow.evals.medagentbench.synthetic import SYNTHETIC_NOW
    from clinicflow.evals.medagentbench.tasks import save_tasks

    if choices.fhir_url:
        typer.echo(f"Adding MRN identifiers and task labs to the patients on {base_url} ...")
    now = choices.now or SYNTHETIC_NOW
    loaded = await synthetic_tasks(client, choices.synthetic or 10, now=now, seed=choices.seed)
    saved = save_tasks(loaded, choices.out / "tasks.json")
    typer.echo(f"{len(loaded)} synthetic task(s) written to {saved}")
    return loaded


def _run_info(
    settings: Settings, choices: _Choices, loaded: list[MabTask], selected: list[MabTask], chat: object
) -> dict[str, Any]:
    """What run.json records of the command: the task set, the server, the declarations and the model."""
    from clinicflow.evals.medagentbench.runner import digest

    seed, tasks_path = choices.seed, choices.tasks_path
    model = choices.model_url or choices.model or settings.model or "default (clinicflow-270m-ehr-v2)"
    return {
        "tasks": str(tasks_path) if tasks_path else f"synthetic ({len(loaded)}, seed {seed})",
        "task_set": "file" if tasks_path else "synthetic",
        "server": "given" if choices.fhir_url else "embedded",
        "tasks_total": len(loaded),
        "tasks_selected": len(selected),
        "tasks_sha256": digest(loaded),
        "functions": str(choices.funcs) if choices.funcs else "built-in",
        "model": None if chat is None else model,
    }


def _on_task(record: dict[str, Any]) -> None:
    verdict = "correct" if record["correct"] else f"wrong: {record['reason']}"
    typer.echo(f"[{record['task_id']}] {record['status']}, {record['rounds']} round(s): {verdict}")


async def _main(settings: Settings, choices: _Choices) -> EvalRun:
    from clinicflow.evals.medagentbench.preflight import check_patients
    from clinicflow.evals.medagentbench.runner import run_medagentbench
    from clinicflow.evals.medagentbench.tasks import load_functions, load_tasks
    from clinicflow.evals.medagentbench.variants import get_variant
    from clinicflow.fhir import FhirClient

    variant = get_variant(choices.protocol.value) if choices.protocol is not None else None
    funcs, tasks_path = choices.funcs, choices.tasks_path
    if funcs is None and tasks_path is not None and (tasks_path.parent / "funcs_v1.json").exists():
        funcs = tasks_path.parent / "funcs_v1.json"
        choices = replace(choices, funcs=funcs)
    functions = load_functions(funcs)
    loaded = load_tasks(tasks_path) if tasks_path is not None else None
    async with _server(settings, choices.fhir_url, choices.out) as base_url:
        typer.echo(f"FHIR server: {base_url}")
        async with FhirClient(base_url, token=settings.fhir_token) as client:
            if loaded is None:
                loaded = await _synthetic_tasks(client, choices, base_url)
            selected = loaded[: choices.limit] if choices.limit else loaded
            # The run checks this too; checking first stops a wrong server before the model loads.
            await check_patients(client, selected)
        chat = None
        if choices.agent is not AgentChoice.oracle:
            typer.echo("Loading the model ...")
            chat = await asyncio.to_thread(_load_model, settings, choices.model, choices.model_url)
        return await run_medagentbench(
            selected,
            base_url=base_url,
            agent=choices.agent.value,
            out_dir=choices.out,
            protocol=variant,
            model=chat,
            functions=functions,
            max_rounds=choices.max_rounds,
            max_response_chars=choices.max_response_chars,
            token=settings.fhir_token,
            run_info=_run_info(settings, choices, loaded, selected, chat),
            on_task=_on_task,
        )


def medagentbench(
    tasks: Annotated[
        Path | None, typer.Option("--tasks", help="MedAgentBench task file (e.g. test_data_v1.json).")
    ] = None,
    fhir_url: Annotated[
        str | None,
        typer.Option(
            "--fhir-url", help="FHIR base URL; default CLINICFLOW_FHIR_URL, or the embedded server."
        ),
    ] = None,
    agent: Annotated[
        AgentChoice,
        typer.Option("--agent", help="text: a model on the text protocol; tools: clinicflow graph; oracle."),
    ] = AgentChoice.text,
    protocol: Annotated[
        ProtocolChoice | None,
        typer.Option(
            "--protocol",
            help="original: the published evaluation's rules (default); clinicflow: clinicflow's variant "
            "(the default, and the only choice, for --agent tools).",
        ),
    ] = None,
    synthetic: Annotated[
        int | None,
        typer.Option(
            "--synthetic", min=1, help="Instantiate N tasks of the 10 types on the synthetic cohort."
        ),
    ] = None,
    funcs: Annotated[
        Path | None, typer.Option("--funcs", help="Endpoint declarations (funcs_v1.json); default built-in.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder for results and report.")] = Path(
        "medagentbench-out"
    ),
    model: Annotated[
        str | None, typer.Option("--model", help="Model folder or built-in name; default the tuned 270M.")
    ] = None,
    model_url: Annotated[str | None, typer.Option("--model-url", help="OpenAI-compatible base URL.")] = None,
    max_rounds: Annotated[int, typer.Option("--max-rounds", min=1, help="Turns per task.")] = 8,
    max_response_chars: Annotated[
        int | None, typer.Option("--max-response-chars", min=100, help="Cut GET answers to this length.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Run only the first N tasks.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic task set.")] = 0,
    now: Annotated[
        str | None, typer.Option("--now", help="Current time of synthetic tasks (ISO 8601).")
    ] = None,
) -> None:
    """Run MedAgentBench tasks, score each by its task type's rules, and write a report with a plot."""
    from clinicflow.evals.medagentbench.preflight import PreflightError
    from clinicflow.evals.medagentbench.tasks import TaskFileError
    from clinicflow.fhir import FhirError
    from clinicflow.fhir.server import EmbeddedServerError
    from clinicflow.settings import Settings

    if (tasks is None) == (synthetic is None):
        _fail("give either --tasks FILE or --synthetic N")
    if agent is AgentChoice.tools and protocol is ProtocolChoice.original:
        _fail(
            "--protocol original scores the text conversation, and --agent tools runs clinicflow's tool "
            "graph: use --protocol clinicflow"
        )
    settings = Settings()  # type: ignore[call-arg]
    url = fhir_url or settings.fhir_url
    if tasks is not None and not url:
        _fail(
            "--tasks needs the FHIR server holding the tasks' patients: "
            "--fhir-url URL (or CLINICFLOW_FHIR_URL)"
        )
    choices = _Choices(
        tasks, synthetic, url, agent, protocol, funcs, out, model, model_url, max_rounds,
        max_response_chars, limit, seed, now,
    )  # fmt: skip
    try:
        run = asyncio.run(_main(settings, choices))
    except PreflightError as exc:
        _fail(str(exc), PREFLIGHT_EXIT)
    except (TaskFileError, FhirError, EmbeddedServerError, ValueError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("\ninterrupted", err=True)
        raise typer.Exit(130) from None
    _print_summary(run, out)


def _pct(block: dict[str, Any]) -> str:
    if not block["n"]:
        return "n/a"
    low, high = block["ci95"]
    return f"{100 * block['rate']:.1f}% ({block['k']}/{block['n']}, 95% CI {100 * low:.1f}-{100 * high:.1f})"


def _print_summary(run: EvalRun, out: Path) -> None:
    report = run.report
    if run.skipped:
        typer.echo(f"{run.skipped} task(s) were already in {out} and were not run again")
    typer.echo(
        f"protocol {report['protocol']}; "
        f"success: overall {_pct(report['overall'])}; query {_pct(report['query'])}; "
        f"action {_pct(report['action'])}; invalid actions {_pct(report['invalid_action'])}"
    )
    typer.echo(f"report: {run.paths['markdown']}")


if __name__ == "__main__":
    typer.run(medagentbench)
