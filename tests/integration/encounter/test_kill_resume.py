"""Kill the eval process mid-run, rerun the same command: finished cases are not rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from clinicflow.evals.agentclinic import SHIPPED_SCENARIOS

REPO = Path(__file__).resolve().parents[3]


def _scenarios(path: Path, copies: int) -> list[str]:
    """`copies` distinct cases (ids and objectives made unique) built from the shipped scenarios."""
    source = [
        json.loads(line) for line in (SHIPPED_SCENARIOS / "clinicflow_osce.jsonl").read_text().splitlines()
    ]
    objectives = []
    with path.open("w", encoding="utf-8") as handle:
        for i in range(copies):
            record = json.loads(json.dumps(source[i % len(source)]))
            record["id"] = f"copy-{i:02d}"
            record["OSCE_Examination"]["Objective_for_Doctor"] += f" (copy {i})"
            objectives.append(record["OSCE_Examination"]["Objective_for_Doctor"])
            handle.write(json.dumps(record) + "\n")
    return objectives


def _command(scenarios: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "tests.integration.encounter.fake_eval",
        "--scenarios", str(scenarios), "--out", str(out), "--turns", "3", "--concurrency", "1",
    ]  # fmt: skip


def _finished(out: Path) -> list[str]:
    path = out / "results.jsonl"
    ids = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            ids.append(json.loads(line)["case_id"])
        except json.JSONDecodeError:
            continue
    return ids


def test_killed_eval_resumes_without_rerunning_finished_cases(tmp_path: Path) -> None:
    scenarios = tmp_path / "cases.jsonl"
    objectives = _scenarios(scenarios, 10)
    out = tmp_path / "out"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    env = {**os.environ, "FAKE_EVAL_DELAY": "0.05"}

    child = subprocess.Popen(
        _command(scenarios, out),
        cwd=REPO,
        env={**env, "FAKE_EVAL_LOG": str(first_log)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while len(_finished(out)) < 3:
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        assert time.monotonic() < deadline, "no case finished in time"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    if child.stderr:
        child.stderr.close()
    before = _finished(out)
    assert 3 <= len(before) < len(objectives)
    assert not (out / "report.json").exists()

    rerun = subprocess.run(
        _command(scenarios, out),
        cwd=REPO,
        env={**env, "FAKE_EVAL_LOG": str(second_log)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "already finished" in rerun.stdout
    rerun_ids = {f"copy-{objectives.index(o):02d}" for o in second_log.read_text().splitlines()}
    assert rerun_ids == {f"copy-{i:02d}" for i in range(len(objectives))} - set(before)
    after = _finished(out)
    assert sorted(set(after)) == sorted(f"copy-{i:02d}" for i in range(len(objectives)))
    report = json.loads((out / "report.json").read_text())
    assert report["cases_finished"] == len(objectives)
    assert len(list((out / "transcripts").glob("*.jsonl"))) == len(objectives)
