"""The harness end to end against the real embedded server: the oracle scores 100% on the synthetic set
under either protocol, a run folder resumes only its own configuration, and tasks whose patients the
server lacks stop before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinicflow.evals.medagentbench.oracle import OracleAgent
from clinicflow.evals.medagentbench.preflight import PreflightError
from clinicflow.evals.medagentbench.runner import run_medagentbench
from clinicflow.evals.medagentbench.synthetic import SyntheticPatient, prepare_synthetic_cohort
from clinicflow.evals.medagentbench.tasks import MabTask, load_tasks
from clinicflow.evals.medagentbench.variants import CLINICFLOW, ORIGINAL, ProtocolVariant
from clinicflow.evals.run_folder import RunConfigMismatchError
from clinicflow.fhir import FhirClient

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "medagentbench"


@pytest.mark.parametrize("variant", [ORIGINAL, CLINICFLOW], ids=lambda v: v.name)
async def test_the_oracle_scores_100_percent(
    mab_server: str, mab_tasks: list[MabTask], tmp_path: Path, variant: ProtocolVariant
) -> None:
    run = await run_medagentbench(
        mab_tasks, base_url=mab_server, agent="oracle", out_dir=tmp_path, protocol=variant
    )
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
    markdown = run.paths["markdown"].read_text()
    assert run.paths["plot"].stat().st_size > 0 and "100.0% (30/30" in markdown
    assert f"- protocol: `{variant.name}`" in markdown and "## Differences from the published" in markdown
    assert json.loads(run.paths["manifest"].read_text())["protocol"] == variant.name
    assert ("GPT-4o: 64.0%" in markdown) == (variant is ORIGINAL), "published rates only beside original"


async def test_a_run_folder_resumes_only_its_own_configuration(
    mab_server: str, mab_tasks: list[MabTask], tmp_path: Path
) -> None:
    first = await run_medagentbench(mab_tasks[:3], base_url=mab_server, agent="oracle", out_dir=tmp_path)
    again = await run_medagentbench(mab_tasks[:3], base_url=mab_server, agent="oracle", out_dir=tmp_path)
    assert (first.skipped, again.skipped) == (0, 3)
    assert [r["task_id"] for r in again.records] == [t.id for t in mab_tasks[:3]]
    assert len(again.paths["results"].read_text().splitlines()) == 3, "nothing ran twice"
    with pytest.raises(RunConfigMismatchError, match="protocol: 'original' -> 'clinicflow'"):
        await run_medagentbench(
            mab_tasks[:3], base_url=mab_server, agent="oracle", out_dir=tmp_path, protocol=CLINICFLOW
        )


def _benchmark_style_tasks() -> list[MabTask]:
    """Tasks in the benchmark's format naming patients that only its own server holds."""
    mrns = ["S2874099", "S2380121", "S3032536", "S6315806", "S6307599", "S2823623", "S2016972"]
    tasks = [
        MabTask(id=f"task2_{i}", instruction=f"What's the age of the patient with MRN of {m}?", eval_MRN=m)
        for i, m in enumerate(mrns, 1)
    ]
    return [*tasks, MabTask(id="task1_1", instruction="What's the MRN of ...?", sol=["Patient not found"])]


async def test_tasks_whose_patients_the_server_lacks_stop_before_running(
    mab_server: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with pytest.raises(PreflightError) as caught:
        await run_medagentbench(_benchmark_style_tasks(), base_url=mab_server, agent="oracle", out_dir=out)
    message = str(caught.value)
    assert "lacks 7 of the 7 patients the tasks name" in message
    assert "S2016972, S2380121, S2823623, S2874099, S3032536, ..." in message
    assert not (out / "run.json").exists() and not (out / "results.jsonl").exists()


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


async def test_the_benchmarks_own_tasks_stop_on_a_server_without_their_patients(
    mab_server: str, tmp_path: Path
) -> None:
    path = SHARED / "test_data_v1.json"
    if not path.exists():
        pytest.skip(f"MedAgentBench v1 task file not found at {path}")
    tasks = load_tasks(path)
    named = len({t.eval_MRN for t in tasks if t.eval_MRN})
    with pytest.raises(PreflightError, match=f"lacks {named} of the {named} patients"):
        await run_medagentbench(tasks, base_url=mab_server, agent="oracle", out_dir=tmp_path)


async def test_the_oracle_reads_everything_through_the_protocol(
    mab_server: str, mab_tasks: list[MabTask]
) -> None:
    from clinicflow.evals.medagentbench.protocol import build_prompt

    oracle = OracleAgent()
    task = next(t for t in mab_tasks if t.id == "task9_syn1")
    first = await oracle.respond(task, [{"role": "user", "content": build_prompt(task, [], mab_server)}])
    assert first == f"GET {mab_server}/Patient?identifier={task.eval_MRN}"
