"""Resumable AgentClinic runs: concurrent encounters, one transcript per case, a results log, a report.

Layout of an output folder::

    run.json                  what was run (scenario digest, models, protocol, turns, biases); a rerun
                              must match it
    results.jsonl             one line per finished case, appended and fsynced as each case ends
    transcripts/<case>.jsonl  one line per utterance of that case
    report.{md,json,png}      written after every run, over all finished cases

A case counts as finished once its results line is written; a rerun skips finished cases, so an
interrupted eval resumes where it stopped. Failed cases are reported and retried on the next run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool

from clinicflow.agents.encounter import (
    DEFAULT_PROTOCOL,
    EncounterProtocol,
    get_protocol,
    sets_generation,
    validate_bias,
    with_generation,
)
from clinicflow.evals.agentclinic.report import build_report, write_report
from clinicflow.evals.run_folder import RunConfigMismatchError, RunFolder, RunSummary, write_atomic
from clinicflow.graphs.encounter import (
    EncounterCase,
    EncounterOutcome,
    RoleModels,
    Utterance,
    build_encounter_graph,
    run_encounter,
)

__all__ = ["COMPARED_KEYS", "RunConfigMismatchError", "RunStore", "RunSummary", "run_agentclinic"]

COMPARED_KEYS = (
    "scenarios_sha256",
    "models",
    "protocol",
    "turns",
    "doctor_bias",
    "patient_bias",
    "image_request",
    "doctor_tools",
    "max_new_tokens",
)
"""Manifest keys a rerun into the same folder must match (limit and concurrency may change)."""


class RunStore(RunFolder):
    """The files of one run folder; results are appended one line per case, transcripts written whole."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__(out_dir, COMPARED_KEYS)
        self.transcripts = out_dir / "transcripts"

    def open(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create the folder, or check that the run already in it has the same configuration."""
        self.transcripts.mkdir(parents=True, exist_ok=True)
        return super().open(manifest)

    def finished(self) -> dict[str, dict[str, Any]]:
        """Finished cases by id; a line cut short by a kill is ignored (that case runs again)."""
        return {r["case_id"]: r for r in self.results() if isinstance(r.get("case_id"), str)}

    def transcript_path(self, case_id: str) -> Path:
        """Where a case's transcript lives."""
        return self.transcripts / f"{case_id}.jsonl"

    def record(self, result: Mapping[str, Any], transcript: Sequence[Utterance]) -> None:
        """Write the transcript, then append and fsync the results line that marks the case finished."""
        body = "".join(json.dumps(u, ensure_ascii=False) + "\n" for u in transcript)
        write_atomic(self.transcript_path(str(result["case_id"])), body)
        self.append(result)


_VERDICT_FIELDS = ("diagnosis", "correct", "moderator_reply", "turns", "tests_requested", "finished")
_TURN_FIELDS = ("image_turns", "image_not_sent", "echo_turns")
"""The outcome's fields a results line holds, in its order."""


def _result_line(case: EncounterCase, outcome: EncounterOutcome, elapsed: float) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "correct_diagnosis": case.correct_diagnosis,
        **{key: getattr(outcome, key) for key in _VERDICT_FIELDS},
        "image_case": case.image is not None or case.image_note is not None,
        "image_missing": case.image_note is not None,
        **{key: getattr(outcome, key) for key in _TURN_FIELDS},
        "elapsed_s": round(elapsed, 3),
        "transcript": f"transcripts/{case.case_id}.jsonl",
        "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _with_generation(models: RoleModels, rules: EncounterProtocol, max_new_tokens: int | None) -> RoleModels:
    """The role models as copies with the protocol's temperature and token limit (one copy per model)."""
    tokens = max_new_tokens or rules.max_new_tokens
    copies: dict[int, Any] = {}
    for model in vars(models).values():
        copies.setdefault(id(model), with_generation(model, rules.temperature, tokens))
    return RoleModels(**{role: copies[id(model)] for role, model in vars(models).items()})


async def run_agentclinic(
    cases: Sequence[EncounterCase],
    models: RoleModels,
    out_dir: Path,
    *,
    run_info: Mapping[str, Any] | None = None,
    protocol: str = DEFAULT_PROTOCOL,
    turns: int = 20,
    doctor_bias: str | None = None,
    patient_bias: str | None = None,
    image_request: bool = False,
    max_new_tokens: int | None = None,
    concurrency: int = 4,
    doctor_tools: Sequence[BaseTool] = (),
    record_tools: Sequence[BaseTool] = (),
    on_case: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Run every unfinished case (at most `concurrency` at once), record each, and write the report.

    `run_info` adds to run.json (scenario path and digest, model specs). `protocol` is `original`
    (AgentClinic's rules) or `clinicflow` (the project's variant); a run folder holds one protocol.
    Every role's model runs as a copy with the protocol's temperature and token limit
    (`max_new_tokens` overrides the limit).
    `doctor_tools` (all cases) and `record_tools` (only cases linked to a FHIR patient) are the
    tool-use variant beyond AgentClinic (clinicflow protocol only).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    rules = get_protocol(protocol)
    doctor_bias = validate_bias(doctor_bias, "doctor")
    patient_bias = validate_bias(patient_bias, "patient")
    configured = _with_generation(models, rules, max_new_tokens)
    graphs = _Graphs(
        configured, rules, turns, (doctor_bias, patient_bias), image_request, doctor_tools, record_tools
    )
    manifest = {
        **dict(run_info or {}),
        "protocol": rules.name,
        "turns": turns,
        "doctor_bias": doctor_bias,
        "patient_bias": patient_bias,
        "image_request": image_request,
        "doctor_tools": bool(doctor_tools or record_tools),
        "max_new_tokens": max_new_tokens,
        "generation": _generation(models, rules, max_new_tokens),
    }
    manifest.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    store = RunStore(out_dir)
    manifest = store.open(manifest)
    done = store.finished()
    pending = [case for case in cases if case.case_id not in done]
    failures = await _run_pending(pending, graphs, store, concurrency, on_case)
    report = build_report(_in_order(store, cases), manifest=manifest, selected=len(cases), failures=failures)
    paths = write_report(report, out_dir)
    return RunSummary(
        out_dir, len(pending) - len(failures), len(cases) - len(pending), failures, report, paths
    )


def _in_order(store: RunStore, cases: Sequence[EncounterCase]) -> list[dict[str, Any]]:
    """Every finished case's results line, in the order of `cases` (others after them, by id)."""
    order = {case.case_id: i for i, case in enumerate(cases)}
    return sorted(
        store.finished().values(), key=lambda r: (order.get(r["case_id"], len(order)), r["case_id"])
    )


class _Graphs:
    """The compiled encounter graphs of a run: one without and one with the record tools (for cases
    linked to a FHIR patient), built up front so that an option the protocol lacks fails before the run
    folder is touched."""

    def __init__(
        self,
        models: RoleModels,
        rules: EncounterProtocol,
        turns: int,
        biases: tuple[str | None, str | None],
        image_request: bool,
        doctor_tools: Sequence[BaseTool],
        record_tools: Sequence[BaseTool],
    ) -> None:
        self.linked_tools = bool(record_tools)
        self.graphs = {
            linked: build_encounter_graph(
                models,
                protocol=rules,
                max_turns=turns,
                doctor_bias=biases[0],
                patient_bias=biases[1],
                image_request=image_request,
                doctor_tools=[*doctor_tools, *(record_tools if linked else ())],
            )
            for linked in {False, self.linked_tools}
        }

    def for_case(self, case: EncounterCase) -> Any:
        return self.graphs[self.linked_tools and case.patient_id is not None]


def _generation(models: RoleModels, rules: EncounterProtocol, max_new_tokens: int | None) -> dict[str, Any]:
    """The generation settings as run.json records them, with the roles whose model could not take them."""
    roles = {role: getattr(models, role) for role in ("doctor", "patient", "measurement", "moderator")}
    return {
        "temperature": rules.temperature,
        "max_new_tokens": max_new_tokens or rules.max_new_tokens,
        "not_applied_to": [role for role, model in roles.items() if not sets_generation(model)],
    }


async def _run_pending(
    pending: Sequence[EncounterCase],
    graphs: _Graphs,
    store: RunStore,
    concurrency: int,
    on_case: Callable[[dict[str, Any]], None] | None,
) -> list[dict[str, str]]:
    """Run the cases, at most `concurrency` at once, recording each as it ends; returns the failures."""
    semaphore = asyncio.Semaphore(concurrency)
    failures: list[dict[str, str]] = []

    async def one(case: EncounterCase) -> None:
        async with semaphore:
            started = time.perf_counter()
            try:
                outcome = await run_encounter(graphs.for_case(case), case)
            except Exception as exc:
                failures.append({"case_id": case.case_id, "error": f"{type(exc).__name__}: {exc}"})
                return
            result = _result_line(case, outcome, time.perf_counter() - started)
            store.record(result, outcome.transcript)
            if on_case is not None:
                on_case(result)

    async with asyncio.TaskGroup() as group:
        for case in pending:
            group.create_task(one(case))
    return failures
