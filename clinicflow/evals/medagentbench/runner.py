"""Run MedAgentBench tasks against a FHIR base URL with one agent, score them, and write the report.

Agents: `text` (a chat model speaking the original protocol), `tools` (clinicflow's EHR task graph, writes
auto-approved by an explicit, recorded eval policy) and `oracle` (scripted reference solutions). For the
offline task set, `synthetic_server` serves a private copy of the demo cohort on the embedded server.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from langchain_core.language_models import BaseChatModel

from clinicflow.evals.medagentbench.oracle import OracleAgent
from clinicflow.evals.medagentbench.protocol import FhirGetter, ModelTextAgent, TextAgent, run_text_task
from clinicflow.evals.medagentbench.report import build_report, write_report
from clinicflow.evals.medagentbench.scoring import FhirChartSource, Score, Trajectory, score_task
from clinicflow.evals.medagentbench.synthetic import SYNTHETIC_NOW, generate_tasks, prepare_synthetic_cohort
from clinicflow.evals.medagentbench.tasks import MabTask, load_functions
from clinicflow.evals.medagentbench.tools_agent import APPROVAL_POLICY, ToolsAgent
from clinicflow.fhir import FhirClient
from clinicflow.fhir.demo import copy_demo_database, ensure_demo_database, free_port
from clinicflow.fhir.server import EmbeddedFhirServer

__all__ = [
    "AgentKind",
    "EvalRun",
    "run_medagentbench",
    "synthetic_server",
    "synthetic_tasks",
]

AgentKind = Literal["text", "tools", "oracle"]
RESULTS_FILE = "results.jsonl"


@dataclass
class EvalRun:
    """A finished eval: one record per task, the report, and where the files are."""

    records: list[dict[str, Any]]
    report: dict[str, Any]
    paths: dict[str, Path]


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
        "correct": score.correct,
        "reason": score.reason,
        "expected": score.expected,
        "status": trajectory.status,
        "result": trajectory.result,
        "posts": len(trajectory.posts),
        "accepted_posts": len(trajectory.accepted_posts),
        "rounds": trajectory.rounds,
        "seconds": trajectory.seconds,
        "error": trajectory.error,
        "trajectory": trajectory.model_dump(mode="json"),
    }


async def run_medagentbench(
    tasks: Sequence[MabTask],
    *,
    base_url: str,
    agent: AgentKind,
    out_dir: Path,
    model: BaseChatModel | None = None,
    functions: Sequence[dict[str, Any]] | None = None,
    max_rounds: int = 8,
    max_response_chars: int | None = None,
    token: str | None = None,
    run_info: dict[str, Any] | None = None,
    on_task: Callable[[dict[str, Any]], None] | None = None,
) -> EvalRun:
    """Run, score and report `tasks`; per-task records go to `results.jsonl` as they finish."""
    if agent in ("text", "tools") and model is None:
        raise ValueError(f"agent {agent!r} needs a chat model")
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    results_path.write_text("")
    declarations = list(functions) if functions is not None else load_functions(None)
    records: list[dict[str, Any]] = []
    started = datetime.now(UTC)
    async with (
        FhirClient(base_url, token=token) as client,
        httpx.AsyncClient(
            timeout=60.0, headers={"Authorization": f"Bearer {token}"} if token else None
        ) as http,
    ):
        chart = FhirChartSource(client)
        getter = FhirGetter(client.base_url, http, max_chars=max_response_chars)
        tools_agent = ToolsAgent(model, client, max_steps=max_rounds) if agent == "tools" and model else None
        text_agent: TextAgent = OracleAgent() if agent == "oracle" else ModelTextAgent(model)  # type: ignore[arg-type]
        for task in tasks:
            t0 = time.perf_counter()
            if tools_agent is not None:
                trajectory = await tools_agent.run(task)
            else:
                trajectory = await run_text_task(
                    task, text_agent, getter, declarations, max_rounds=max_rounds
                )
            score = await score_task(task, trajectory, chart, client.base_url)
            record = _record(task, trajectory, score)
            record["seconds"] = round(time.perf_counter() - t0, 3)
            records.append(record)
            with results_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, default=str) + "\n")
            if on_task is not None:
                on_task(record)
    run = {
        "agent": agent,
        "fhir_url": client.base_url,
        "max_rounds": max_rounds,
        "approval_policy": APPROVAL_POLICY
        if agent == "tools"
        else "none (text protocol: POSTs recorded, not sent)",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "tasks_run": len(records),
        **(run_info or {}),
    }
    report = build_report(records, run=run)
    paths = write_report(report, out_dir)
    paths["results"] = results_path
    return EvalRun(records=records, report=report, paths=paths)
