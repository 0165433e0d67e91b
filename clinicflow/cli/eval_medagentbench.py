"""`clinicflow eval medagentbench`: MedAgentBench tasks on any FHIR base URL, or an offline synthetic set.

Exit codes: 0 the eval ran (whatever the score); 2 bad input, or a FHIR server or model that cannot be
reached or loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from clinicflow.evals.medagentbench.runner import EvalRun
    from clinicflow.settings import Settings

__all__ = ["AgentChoice", "medagentbench"]


class AgentChoice(StrEnum):
    """Who does the tasks."""

    text = "text"
    tools = "tools"
    oracle = "oracle"


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


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


async def _main(
    settings: Settings,
    *,
    tasks_path: Path | None,
    synthetic: int | None,
    fhir_url: str | None,
    agent: AgentChoice,
    funcs: Path | None,
    out: Path,
    model: str | None,
    model_url: str | None,
    max_rounds: int,
    max_response_chars: int | None,
    limit: int | None,
    seed: int,
    now: str | None,
) -> EvalRun:
    from clinicflow.evals.medagentbench.runner import run_medagentbench, synthetic_tasks
    from clinicflow.evals.medagentbench.synthetic import SYNTHETIC_NOW
    from clinicflow.evals.medagentbench.tasks import load_functions, load_tasks, save_tasks
    from clinicflow.fhir import FhirClient

    if funcs is None and tasks_path is not None and (tasks_path.parent / "funcs_v1.json").exists():
        funcs = tasks_path.parent / "funcs_v1.json"
    functions = load_functions(funcs)
    loaded = load_tasks(tasks_path) if tasks_path is not None else None
    chat = None
    if agent is not AgentChoice.oracle:
        typer.echo("Loading the model ...")
        chat = await asyncio.to_thread(_load_model, settings, model, model_url)

    async with _server(settings, fhir_url, out) as base_url:
        typer.echo(f"FHIR server: {base_url}")
        if loaded is None:
            if fhir_url:
                typer.echo(f"Adding MRN identifiers and task labs to the patients on {base_url} ...")
            async with FhirClient(base_url, token=settings.fhir_token) as client:
                loaded = await synthetic_tasks(client, synthetic or 10, now=now or SYNTHETIC_NOW, seed=seed)
            typer.echo(f"{len(loaded)} synthetic task(s) written to {save_tasks(loaded, out / 'tasks.json')}")
        selected = loaded[:limit] if limit else loaded

        def on_task(record: dict[str, Any]) -> None:
            verdict = "correct" if record["correct"] else f"wrong: {record['reason']}"
            typer.echo(f"[{record['task_id']}] {record['status']}, {record['rounds']} round(s): {verdict}")

        return await run_medagentbench(
            selected,
            base_url=base_url,
            agent=agent.value,
            out_dir=out,
            model=chat,
            functions=functions,
            max_rounds=max_rounds,
            max_response_chars=max_response_chars,
            token=settings.fhir_token,
            run_info={
                "tasks": str(tasks_path) if tasks_path else f"synthetic ({len(loaded)}, seed {seed})",
                "functions": str(funcs) if funcs else "built-in",
                "model": None if chat is None else (model_url or model or "default"),
            },
            on_task=on_task,
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
        AgentChoice, typer.Option("--agent", help="text: original protocol; tools: clinicflow graph; oracle.")
    ] = AgentChoice.text,
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
    model: Annotated[str | None, typer.Option("--model", help="Local model folder; default 270M.")] = None,
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
    from clinicflow.evals.medagentbench.tasks import TaskFileError
    from clinicflow.fhir import FhirError
    from clinicflow.fhir.server import EmbeddedServerError
    from clinicflow.settings import Settings

    if (tasks is None) == (synthetic is None):
        _fail("give either --tasks FILE or --synthetic N")
    settings = Settings()  # type: ignore[call-arg]
    url = fhir_url or settings.fhir_url
    if tasks is not None and not url:
        _fail(
            "--tasks needs the FHIR server holding the tasks' patients: "
            "--fhir-url URL (or CLINICFLOW_FHIR_URL)"
        )
    try:
        run = asyncio.run(
            _main(
                settings,
                tasks_path=tasks,
                synthetic=synthetic,
                fhir_url=url,
                agent=agent,
                funcs=funcs,
                out=out,
                model=model,
                model_url=model_url,
                max_rounds=max_rounds,
                max_response_chars=max_response_chars,
                limit=limit,
                seed=seed,
                now=now,
            )
        )
    except (TaskFileError, FhirError, EmbeddedServerError, ValueError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("\ninterrupted", err=True)
        raise typer.Exit(130) from None
    report = run.report

    def pct(block: dict[str, Any]) -> str:
        if not block["n"]:
            return "n/a"
        low, high = block["ci95"]
        return (
            f"{100 * block['rate']:.1f}% ({block['k']}/{block['n']}, 95% CI {100 * low:.1f}-{100 * high:.1f})"
        )

    typer.echo(
        f"success: overall {pct(report['overall'])}; query {pct(report['query'])}; "
        f"action {pct(report['action'])}; invalid actions {pct(report['invalid_action'])}"
    )
    typer.echo(f"report: {run.paths['markdown']}")


if __name__ == "__main__":
    typer.run(medagentbench)
