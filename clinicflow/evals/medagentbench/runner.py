"""Run MedAgentBench tasks against a FHIR base URL with one agent, score them, and write the report.

Agents: `text` (a chat model speaking the benchmark's text protocol), `tools` (clinicflow's EHR task
graph, writes auto-approved by an explicit, recorded eval policy) and `oracle` (scripted reference
solutions). The protocol variant (`original` unless given; `clinicflow` for the tool graph) is chosen
here once and used for both the loop and the scoring. Before any task runs, the server must hold every
patient the tasks name. The output folder is resumable: a rerun with the same configuration skips the
tasks already in `results.jsonl`. For the offline task set, `synthetic_server` serves a private copy of
the demo cohort on the embedded server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from langchain_core.language_models import BaseChatModel

from clinicflow.evals.medagentbench.oracle import OracleAgent
from clinicflow.evals.medagentbench.preflight import check_patients
from clinicflow.evals.medagentbench.protocol import FhirGetter, ModelTextAgent, TextAgent, run_text_task
from clinicflow.evals.medagentbench.report import build_report, write_report
from clinicflow.evals.medagentbench.scoring import FhirChartSource, Score, Trajectory, score_task
from clinicflow.evals.medagentbench.synthetic import SYNTHETIC_NOW, generate_tasks, prepare_synthetic_cohort
from clinicflow.evals.medagentbench.tasks import MabTask, load_functions
from clinicflow.evals.medagentbench.tools_agent import APPROVAL_POLICY, ToolsAgent
from clinicflow.evals.medagentbench.variants import CLINICFLOW, ORIGINAL, ProtocolVariant
from clinicflow.evals.run_folder import RunFolder
from clinicflow.fhir import FhirClient
from clinicflow.fhir.demo import copy_demo_database, ensure_demo_database, free_port
from clinicflow.fhir.server import EmbeddedFhirServer

__all__ = [
    "COMPARED_KEYS",
    "AgentKind",
    "EvalRun",
    "digest",
    "run_medagentbench",
    "synthetic_server",
    "synthetic_tasks",
]

AgentKind = Literal["text", "tools", "oracle"]
COMPARED_KEYS = (
    "tasks_sha256",
    "protocol",
    "agent",
    "model",
    "functions_sha256",
    "max_rounds",
    "max_response_chars",
)
"""run.json keys a rerun into the same folder must match, so that one folder never mixes two setups."""


@dataclass
class EvalRun:
    """A finished eval: one record per task (run now or earlier), the report, and where the files are."""

    records: list[dict[str, Any]]
    report: dict[str, Any]
    paths: dict[str, Path]
    skipped: int = 0


def digest(items: Sequence[Any]) -> str:
    """SHA-256 of tasks or function declarations, as canonical JSON."""
    h = hashlib.sha256()
    for item in items:
        data = item.model_dump(mode="json") if isinstance(item, MabTask) else item
        h.update(json.dumps(data, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


@asynccontextmanager
async def synthetic_server(cache_dir: Path, data_dir: Path) -> AsyncIterator[str]:
    """The embedded FHIR server on a fresh private copy of the demo cohort in `data_dir`; yields its URL."""
    loaded = await ensure_demo_database(cache_dir, progress=False)
    if data_dir.exists():
        shutil.rmtree(data_dir)
    await asyncio.to_thread(copy_demo_database, loaded, data_dir)
    server = EmbeddedFhirServer(data_dir, port=free_port())
    await asyncio.to_thread(server.start)
    try:
        yield server.base_url
    finally:
        await asyncio.to_thread(server.stop)


async def synthetic_tasks(
    client: FhirClient, n: int, *, now: str = SYNTHETIC_NOW, seed: int = 0
) -> list[MabTask]:
    """Prepare the server's patients (MRNs, task labs) and instantiate `n` tasks on them."""
    patients = await prepare_synthetic_cohort(client, now=now, seed=seed)
    return generate_tasks(patients, n, now=now, seed=seed)


def _record(task: MabTask, trajectory: Trajectory, score: Score) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "task_type": task.task_type,
        "kind": task.kind,
        **score.model_dump(include={"correct", "reason", "expected"}),
        **trajectory.model_dump(include={"status", "result"}),
        "posts": len(trajectory.posts),
        "accepted_posts": len(trajectory.accepted_posts),
        "rounds": trajectory.rounds,
        "seconds": trajectory.seconds,
        "error": trajectory.error,
        "trajectory": trajectory.model_dump(mode="json"),
    }


def _variant(
    agent: AgentKind, protocol: ProtocolVariant | None, model: BaseChatModel | None
) -> ProtocolVariant:
    """The protocol the run follows; ValueError for an agent without its model or the tool graph under
    the original protocol."""
    if agent in ("text", "tools") and model is None:
        raise ValueError(f"agent {agent!r} needs a chat model")
    variant = protocol or (CLINICFLOW if agent == "tools" else ORIGINAL)
    if agent == "tools" and variant is ORIGINAL:
        raise ValueError(
            "the original protocol scores the text conversation, and --agent tools runs clinicflow's "
            "tool graph: use --protocol clinicflow"
        )
    return variant


def _bearer(token: str | None) -> dict[str, str] | None:
    """The GETs' authorization header, when the server takes a token."""
    return {"Authorization": f"Bearer {token}"} if token else None


def _task_runner(
    agent: AgentKind,
    model: BaseChatModel | None,
    client: FhirClient,
    getter: FhirGetter,
    declarations: Sequence[dict[str, Any]],
    *,
    variant: ProtocolVariant,
    max_rounds: int,
) -> Callable[[MabTask], Awaitable[Trajectory]]:
    """How one task is run: through the tool graph, or the text protocol with a model or the oracle."""
    if agent == "tools" and model is not None:
        return ToolsAgent(model, client, max_steps=max_rounds).run
    text_agent: TextAgent = OracleAgent() if agent == "oracle" else ModelTextAgent(model)  # type: ignore[arg-type]

    async def run_text(task: MabTask) -> Trajectory:
        return await run_text_task(
            task, text_agent, getter, declarations, variant=variant, max_rounds=max_rounds
        )

    return run_text


async def run_medagentbench(
    tasks: Sequence[MabTask],
    *,
    base_url: str,
    agent: AgentKind,
    out_dir: Path,
    protocol: ProtocolVariant | None = None,
    model: BaseChatModel | None = None,
    functions: Sequence[dict[str, Any]] | None = None,
    max_rounds: int = 8,
    max_response_chars: int | None = None,
    token: str | None = None,
    run_info: dict[str, Any] | None = None,
    on_task: Callable[[dict[str, Any]], None] | None = None,
) -> EvalRun:
    """Check the server, then run, score and report the unfinished `tasks`, one results line each.

    `protocol` defaults to `original`, or `clinicflow` for the tool graph, whose conversation the
    original's scorer cannot read. Raises `PreflightError` when the server lacks the tasks' patients and
    `RunConfigMismatchError` when `out_dir` holds a run with another configuration.
    """
    variant = _variant(agent, protocol, model)
    declarations = list(functions) if functions is not None else load_functions(None)
    info = {
        "model": None if model is None else type(model).__name__,
        "functions": "built-in" if functions is None else "given",
        **(run_info or {}),
    }
    manifest = _manifest(tasks, variant, agent, declarations, max_rounds, max_response_chars, info)
    folder = RunFolder(out_dir, COMPARED_KEYS)
    started = datetime.now(UTC)
    async with (
        FhirClient(base_url, token=token) as client,
        httpx.AsyncClient(timeout=60.0, headers=_bearer(token)) as http,
    ):
        await check_patients(client, tasks)
        manifest = folder.open(manifest)
        done = {r["task_id"]: r for r in folder.results() if isinstance(r.get("task_id"), str)}
        skipped = sum(1 for t in tasks if t.id in done)
        chart = FhirChartSource(client, first_page_only=variant.reference_first_page_only)
        getter = FhirGetter(client.base_url, http, max_chars=max_response_chars)
        run_task = _task_runner(
            agent, model, client, getter, declarations, variant=variant, max_rounds=max_rounds
        )
        for task in tasks:
            if task.id in done:
                continue
            t0 = time.perf_counter()
            trajectory = await run_task(task)
            score = await score_task(task, trajectory, chart, client.base_url, variant=variant)
            record = _record(task, trajectory, score)
            record["seconds"] = round(time.perf_counter() - t0, 3)
            folder.append(record)
            done[task.id] = record
            if on_task is not None:
                on_task(record)
    records = [done[t.id] for t in tasks]
    facts = {**manifest, **info}  # this run's own facts (subset, server) over the stored ones
    return _finish(records, facts, folder, skipped, fhir_url=client.base_url, agent=agent, started=started)


def _manifest(
    tasks: Sequence[MabTask],
    variant: ProtocolVariant,
    agent: AgentKind,
    declarations: Sequence[dict[str, Any]],
    max_rounds: int,
    max_response_chars: int | None,
    info: dict[str, Any],
) -> dict[str, Any]:
    """run.json of a new run: what it runs and how (the compared keys), and `info`."""
    return {
        "tasks_sha256": digest(tasks),
        "protocol": variant.name,
        "agent": agent,
        "functions_sha256": digest(declarations),
        "max_rounds": max_rounds,
        "max_response_chars": max_response_chars,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **info,
    }


def _finish(
    records: list[dict[str, Any]],
    facts: dict[str, Any],
    folder: RunFolder,
    skipped: int,
    *,
    fhir_url: str,
    agent: AgentKind,
    started: datetime,
) -> EvalRun:
    """Write the report over all `records` and return the finished eval."""
    run = {
        **facts,
        "fhir_url": fhir_url,
        "approval_policy": APPROVAL_POLICY
        if agent == "tools"
        else "none (text protocol: POSTs recorded, not sent)",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "tasks_run": len(records) - skipped,
        "tasks_skipped": skipped,
    }
    report = build_report(records, run=run)
    paths = write_report(report, folder.out_dir)
    paths["results"] = folder.results_path
    paths["manifest"] = folder.manifest_path
    return EvalRun(records=records, report=report, paths=paths, skipped=skipped)
