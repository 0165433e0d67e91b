"""Crash safety: kill -9 the server while runs execute; after a restart every run finishes from its
checkpoint and nothing is written twice. SQLite with the same worker id (resumed at startup), and
PostgreSQL (checkpointer and store) with a new worker id (taken over when the lease lapses)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from clinicflow.api.auth import create_api_key
from clinicflow.client import Client
from clinicflow.tools.write_tools import WRITE_IDENTIFIER_SYSTEM
from tests.integration.api.conftest import server_env
from tests.integration.api.server import ApiServer, ehr_qa_script
from tests.integration.postgres import PrivatePostgres, postgres  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PLANNER_TURNS = 6
MODEL_CALLS = PLANNER_TURNS + 3
PROBES = 3
QUESTIONS = 3


def _until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _crash_and_recover(
    work: Path, fhir_url: str, patient: str, database_url: str, first: dict[str, str], second: dict[str, str]
) -> dict[str, dict]:
    script = ehr_qa_script(work / "slow.json", delay_ms=300, planner_turns=PLANNER_TURNS)
    env = server_env(work, fhir_url, database_url, script)
    token = create_api_key(
        "crash", ["workflow:*", "write", "patient:*", "audit"], database_url=database_url
    ).token
    server = ApiServer(work, env | first).start()
    try:
        cf = Client(server.url, token)
        probes = [
            cf.create_run("write_probe", {"patient_id": patient, "hold_s": 30})["id"] for _ in range(PROBES)
        ]
        for run_id in probes:
            assert cf.wait(run_id, timeout=30)["status"] == "waiting_approval"
            cf.approve(run_id)
        question = {"question": "Most recent observations?", "patient_id": patient}
        asked = [cf.create_run("ehr_qa", question)["id"] for _ in range(QUESTIONS)]
        audit = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        _until(
            lambda: len(audit.get("/v1/audit", params={"action": "fhir.create"}).json()["entries"]) == PROBES,
            30,
            "the approved writes",
        )
        _until(
            lambda: all(cf.get_run(r)["last_event"] >= 6 for r in asked), 30, "the questions to be under way"
        )
        statuses = {cf.get_run(r)["status"] for r in probes + asked}
        cf.close()
        audit.close()
    finally:
        server.kill()
    assert statuses == {"running"}

    restarted = ApiServer(work, env | second).start()
    try:
        with Client(restarted.url, token) as cf:
            finals = {r: cf.wait(r, timeout=60) for r in probes + asked}
            events = {r: list(cf.events(r)) for r in probes + asked}
    finally:
        restarted.stop()

    for run_id, run in finals.items():
        kinds = [e.type for e in events[run_id]]
        assert run["status"] == "completed", (run_id, run["status"], run["error"])
        assert run["attempts"] >= 2 and kinds.count("run.finished") == 1 and kinds[-1] == "run.finished"
        assert [e.seq for e in events[run_id]] == list(range(1, len(kinds) + 1))
        assert any(e.type == "run.started" and e.data["resumed"] for e in events[run_id])
    for run_id in probes:
        identifier = finals[run_id]["result"]["identifier"]
        bundle = httpx.get(
            f"{fhir_url}/Observation", params={"identifier": f"{WRITE_IDENTIFIER_SYSTEM}|{identifier}"}
        ).json()
        assert len(bundle.get("entry", [])) == 1, f"run {run_id} wrote {len(bundle.get('entry', []))} times"
        assert finals[run_id]["result"]["outcome"]["status"] == "existing"
    for run_id in asked:
        result = finals[run_id]["result"]
        if result["status"] != "answered":
            import json

            Path("/tmp/crashdebug.json").write_text(
                json.dumps(
                    {"run": finals[run_id], "events": [(e.seq, e.type, e.data) for e in events[run_id]]},
                    indent=1,
                    default=str,
                )
            )
        assert result["status"] == "answered", (result, [(e.type, e.data) for e in events[run_id]])
        calls = [e for e in events[run_id] if e.type == "model.tokens"]
        assert MODEL_CALLS <= len(calls) <= MODEL_CALLS + 1, (
            "resumed from the checkpoint, at most one step repeated"
        )
    return finals


def test_kill_9_on_sqlite_resumes_every_run_at_restart(
    fhir_base_url: str, patient_ids: list[str], tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path}/api.sqlite"
    same = {"CLINICFLOW_API_WORKER_ID": "replica-a"}
    _crash_and_recover(tmp_path, fhir_base_url, patient_ids[2], database_url, same, same)


def test_kill_9_on_postgres_another_replica_takes_the_runs_over(
    fhir_base_url: str,
    patient_ids: list[str],
    tmp_path: Path,
    postgres: PrivatePostgres,  # noqa: F811
) -> None:
    import psycopg

    database_url = postgres.create_database("crash")
    lease = {"CLINICFLOW_API_LEASE_S": "3"}
    finals = _crash_and_recover(
        tmp_path,
        fhir_base_url,
        patient_ids[2],
        database_url,
        lease | {"CLINICFLOW_API_WORKER_ID": "replica-a"},
        lease | {"CLINICFLOW_API_WORKER_ID": "replica-b"},
    )
    with psycopg.connect(database_url) as conn:
        threads = {r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints").fetchall()}
        owners = conn.execute("SELECT count(*) FROM cf_runs WHERE owner IS NOT NULL").fetchone()
        audited = conn.execute("SELECT count(*) FROM cf_audit WHERE action = 'run.resume'").fetchone()
    assert set(finals) <= threads
    assert owners == (0,) and audited is not None and audited[0] >= len(finals)
