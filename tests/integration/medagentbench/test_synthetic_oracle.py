"""The harness end to end against the real embedded server: the oracle scores 100% on the synthetic set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinicflow.evals.medagentbench.oracle import OracleAgent
from clinicflow.evals.medagentbench.runner import run_medagentbench
from clinicflow.evals.medagentbench.synthetic import SyntheticPatient, prepare_synthetic_cohort
from clinicflow.evals.medagentbench.tasks import MabTask, load_tasks
from clinicflow.fhir import FhirClient

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "medagentbench"


async def test_the_oracle_scores_100_percent(
    mab_server: str, mab_tasks: list[MabTask], tmp_path: Path
) -> None:
    run = await run_medagentbench(mab_tasks, base_url=mab_server, agent="oracle", out_dir=tmp_path)
    failures = [(r["task_id"], r["reason"]) for r in run.records if not r["correct"]]
    assert failures == []
    report = run.report
    assert (report["overall"]["k"], report["overall"]["n"]) == (30, 30)
    assert report["query"]["rate"] == report["action"]["rate"] == 1.0
    assert report["invalid_action"]["k"] == 0
    posts = {r["task_id"]: r["accepted_posts"] for r in run.records}
    assert posts["task9_syn1"] == 2 and posts["task5_syn1"] == 1 and posts["task10_syn1"] == 1
    assert {posts[f"task5_syn{i}"] for i in (2, 3)} == {0}, "normal and missing magnesium: no order"
    assert sum(1 for line in run.paths["results"].read_text().splitlines() if json.loads(line)) == 30
    assert run.paths["plot"].stat().st_size > 0 and "100.0% (30/30" in run.paths["markdown"].read_text()


async def test_preparing_the_cohort_twice_adds_nothing(
    mab_server: str, mab_patients: list[SyntheticPatient]
) -> None:
    async with FhirClient(mab_server) as client:
        before = {
            p.patient_id: len(await client.search("Observation").where(patient=p.patient_id, code="MG").all())
            for p in mab_patients
        }
        again = await prepare_synthetic_cohort(client)
        after = {
            p.patient_id: len(await client.search("Observation").where(patient=p.patient_id, code="MG").all())
            for p in mab_patients
        }
        mrn_hits = [await client.search("Patient").where(identifier=p.mrn).all() for p in mab_patients]
    assert before == after
    assert [p.mrn for p in again] == [p.mrn for p in mab_patients]
    assert all(len(hits) == 1 for hits in mrn_hits)
    assert all(p.mrn.startswith("S") and len(p.mrn) == 8 for p in mab_patients)


async def test_the_original_task_file_runs_against_any_server(mab_server: str, tmp_path: Path) -> None:
    path = SHARED / "test_data_v1.json"
    if not path.exists():
        pytest.skip(f"MedAgentBench v1 task file not found at {path}")
    one_per_type = list({t.task_type: t for t in load_tasks(path)}.values())
    run = await run_medagentbench(one_per_type, base_url=mab_server, agent="oracle", out_dir=tmp_path)
    assert len(run.records) == 10
    by_type = {r["task_type"]: r for r in run.records}
    not_found = one_per_type[0].sol == ["Patient not found"]
    assert by_type[1]["correct"] == not_found, "only a 'Patient not found' answer can be right here"
    assert not any(by_type[t]["correct"] for t in range(2, 11)), (
        "the benchmark's patients are not on this server"
    )
    assert all(
        by_type[t]["status"] == "error" and "no patient with MRN" in by_type[t]["error"] for t in range(2, 11)
    )
    assert run.paths["markdown"].exists()


async def test_the_oracle_reads_everything_through_the_protocol(
    mab_server: str, mab_tasks: list[MabTask]
) -> None:
    from clinicflow.evals.medagentbench.protocol import build_prompt

    oracle = OracleAgent()
    task = next(t for t in mab_tasks if t.id == "task9_syn1")
    first = await oracle.respond(task, [{"role": "user", "content": build_prompt(task, [], mab_server)}])
    assert first == f"GET {mab_server}/Patient?identifier={task.eval_MRN}"
