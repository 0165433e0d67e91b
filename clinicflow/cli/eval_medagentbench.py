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
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from clinicflow.evals.medagentbench.runner import EvalRun
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


async def _main(
    settings: Settings,
    *,
    tasks_path: Path | None,
    synthetic: int | None,
    fhir_url: str | None,
    agent: AgentChoice,
    protocol: ProtocolChoice | None,
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
    from clinicflow.evals.medagentbench.preflight import check_patients
    from clinicflow.evals.medagentbench.runner import digest, run_medagentbench, synthetic_tasks
    from clinicflow.evals.medagentbench.synthetic import SYNTHETIC_NOW
    from clinicflow.evals.medagentbench.tasks import load_functions, load_tasks, save_tasks
    from clinicflow.evals.medagentbench.variants import get_variant
    from clinicflow.fhir import FhirClient

    variant = get_variant(protocol.value) if protocol is not None else None

    if funcs is None and tasks_path is not None and (tasks_path.parent / "funcs_v1.json").exists():
        funcs = tasks_path.parent / "funcs_v1.json"
    functions = load_functions(funcs)
    loaded = load_tasks(tasks_path) if tasks_path is not None else None

    async with _server(settings, fhir_url, out) as base_url:
        typer.echo(f"FHIR server: {base_url}")
        async with FhirClient(base_url, token=settings.fhir_token) as client:
            if loaded is None:
                if fhir_url:
                    typer.echo(f"Adding MRN identifiers and task labs to the patients on {base_url} ...")
                loaded = await synthetic_tasks(client, synthetic or 10, now=now or SYNTHETIC_NOW, seed=seed)
                saved = save_tasks(loaded, out / "tasks.json")
                typer.echo(f"{len(loaded)} synthetic task(s) written to {saved}")
            selected = loaded[:limit] if limit else loaded
            # The run checks this too; checking first stops a wrong server before the model loads.
            await check_patients(client, selected)
        chat = None
        if agent is not AgentChoice.oracle:
            typer.echo("Loading the model ...")
            chat = await asyncio.to_thread(_load_model, settings, model, model_url)

        def on_task(record: dict[str, Any]) -> None:
            verdict = "correct" if record["correct"] else f"wrong: {record['reason']}"
            typer.echo(f"[{record['task_id']}] {record['status']}, {record['rounds']} round(s): {verdict}")

        return await run_medagentbench(
            selected,
            base_url=base_url,
            agent=agent.value,
            out_dir=out,
            protocol=variant,
            model=chat,
            functions=functions,
            max_rounds=max_rounds,
            max_response_chars=max_response_chars,
            token=settings.fhir_token,
            run_info={
                "tasks": str(tasks_path) if tasks_path else f"synthetic ({len(loaded)}, seed {seed})",
                "task_set": "file" if tasks_path else "synthetic",
                "server": "given" if fhir_url else "embedded",
                "tasks_total": len(loaded),
                "tasks_selected": len(selected),
                "tasks_sha256": digest(loaded),
                "functions": str(funcs) if funcs else "built-in",
                "model": None
                if chat is None
                else (model_url or model or settings.model or "default (clinicflow-270m-ehr-v1)"),
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
    try:
        run = asyncio.run(
            _main(
                settings,
                tasks_path=tasks,
                synthetic=synthetic,
                fhir_url=url,
                agent=agent,
                protocol=protocol,
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
    except PreflightError as exc:
        _fail(str(exc), PREFLIGHT_EXIT)
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

    if run.skipped:
        typer.echo(f"{run.skipped} task(s) were already in {out} and were not run again")
    typer.echo(
        f"protocol {report['protocol']}; "
        f"success: overall {pct(report['overall'])}; query {pct(report['query'])}; "
        f"action {pct(report['action'])}; invalid actions {pct(report['invalid_action'])}"
    )
    typer.echo(f"report: {run.paths['markdown']}")


if __name__ == "__main__":
    typer.run(medagentbench)
