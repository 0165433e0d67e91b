"""The real Gemma 3 270M (CPU) runs 10 synthetic tasks end to end through both agent modes.

The 270M model is a base model, so its scores are not the point: the run proves that prompts, replies,
tool calls, approval-gated writes, scoring and the report all work with a real model. Slow.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clinicflow.evals.medagentbench.runner import run_medagentbench
from clinicflow.evals.medagentbench.synthetic import SyntheticPatient, generate_tasks
from clinicflow.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

VALID = {"completed", "invalid_action", "echo", "limit_reached", "error"}


@pytest.fixture(scope="module")
def gemma():  # type: ignore[no-untyped-def]
    model = pytest.importorskip("clinicflow.model")
    settings = Settings(max_new_tokens=48)  # type: ignore[call-arg]
    return asyncio.run(asyncio.to_thread(model.load_chat_model, settings, progress=False))


@pytest.mark.parametrize("agent", ["text", "tools"])
async def test_gemma_runs_ten_synthetic_tasks(
    gemma, mab_server: str, mab_patients: list[SyntheticPatient], tmp_path: Path, agent: str
) -> None:
    tasks = generate_tasks(mab_patients, 10)
    run = await run_medagentbench(
        tasks,
        base_url=mab_server,
        agent=agent,  # type: ignore[arg-type]
        out_dir=tmp_path,
        model=gemma,
        max_rounds=2,
        max_response_chars=1500,
        run_info={"model": "gemma-3-270m (CPU)"},
    )
    assert [r["task_id"] for r in run.records] == [t.id for t in tasks]
    assert all(r["status"] in VALID and r["reason"] for r in run.records)
    assert sum(r["status"] != "error" for r in run.records) >= 9, [r["error"] for r in run.records]
    assert all(r["trajectory"]["rounds"] >= 1 for r in run.records if r["status"] != "error")
    if agent == "tools":
        assert all(
            r["trajectory"]["agent"] == "tools (auto_approve)" for r in run.records if r["status"] != "error"
        )
    report = run.report
    assert report["overall"]["n"] == 10 and run.paths["plot"].exists()
    seconds = sum(r["seconds"] for r in run.records)
    print(
        f"\n{agent}: success {report['overall']['k']}/10, "
        f"invalid actions {report['invalid_action']['k']}/10, statuses {report['statuses']}, {seconds:.0f} s"
    )
