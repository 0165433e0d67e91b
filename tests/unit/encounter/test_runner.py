"""Resumable AgentClinic runs: results, transcripts, report, and resuming after an interruption."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from clinicflow.evals.agentclinic import (
    SHIPPED_SCENARIOS,
    RunConfigMismatchError,
    load_scenarios,
    run_agentclinic,
    wilson_interval,
)
from clinicflow.graphs.encounter import EncounterCase, RoleModels
from tests.unit.encounter.roles import FakeRoles, SlowScriptedChatModel, role, role_models, system_text

CASES = load_scenarios(SHIPPED_SCENARIOS / "clinicflow_osce.jsonl").cases
INFO = {"scenarios": "clinicflow_osce.jsonl", "scenarios_sha256": "abc", "models": {"doctor": "fake"}}


def _doctor(messages: list[BaseMessage]) -> str:
    user = messages[-1].text
    if "RESULTS: low" in user:
        return "DIAGNOSIS READY: Iron deficiency anemia"
    if "It hurts." in user:
        return "REQUEST TEST: Complete_Blood_Count"
    return "What brings you in?"


def _moderator(messages: list[BaseMessage]) -> str:
    return "Yes" if "correct diagnosis: Iron deficiency anemia" in messages[-1].text else "No"


def _models() -> FakeRoles:
    return role_models(doctor=_doctor, measurement=lambda m: "RESULTS: low", moderator=_moderator)


def _objectives_seen(models: FakeRoles) -> set[str]:
    return {
        c.case_id for c in CASES for call in models.doctor.calls if c.objective in system_text(call.messages)
    }


def _results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


async def test_run_writes_results_transcripts_and_report(tmp_path: Path) -> None:
    seen: list[str] = []
    summary = await run_agentclinic(
        CASES,
        _models(),
        tmp_path,
        run_info=INFO,
        turns=5,
        concurrency=2,
        on_case=lambda r: seen.append(r["case_id"]),
    )
    assert summary.ran == len(CASES) and summary.skipped == 0 and summary.failures == []
    assert sorted(seen) == sorted(c.case_id for c in CASES)
    results = {r["case_id"]: r for r in _results(tmp_path)}
    assert results["cf-iron-deficiency"]["correct"] is True
    assert results["cf-appendicitis"]["correct"] is False
    assert all(r["turns"] == 3 and r["tests_requested"] == ["Complete_Blood_Count"] for r in results.values())
    transcript = [json.loads(x) for x in (tmp_path / "transcripts" / "cf-dka.jsonl").read_text().splitlines()]
    assert [u["role"] for u in transcript] == [
        "doctor",
        "patient",
        "doctor",
        "measurement",
        "doctor",
        "moderator",
    ]

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["cases_finished"] == len(CASES)
    assert report["correct"] == 1
    assert report["accuracy"] == pytest.approx(1 / len(CASES))
    low, high = wilson_interval(1, len(CASES))
    assert report["accuracy_ci95"] == pytest.approx([low, high])
    assert report["mean_turns"] == 3
    assert report["tests_requested_total"] == len(CASES)
    assert [c["case_id"] for c in report["cases"]] == [c.case_id for c in CASES]
    markdown = (tmp_path / "report.md").read_text()
    assert (
        "| cf-iron-deficiency | Iron deficiency anemia | Iron deficiency anemia | correct | 3 |" in markdown
    )
    assert "95% CI (Wilson)" in markdown and "report.png" in markdown
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["turns"] == 5 and manifest["scenarios_sha256"] == "abc"


def test_wilson_interval_matches_published_values() -> None:
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


class _Abort(BaseException):
    """Stands for the process being stopped mid-run."""


async def test_run_interrupted_after_k_cases_resumes_without_rerunning_them(tmp_path: Path) -> None:
    k = 2
    done: list[str] = []

    def stop_after_k(result: dict[str, Any]) -> None:
        done.append(result["case_id"])
        if len(done) == k:
            raise _Abort()

    with pytest.raises(BaseExceptionGroup) as stopped:
        await run_agentclinic(
            CASES, _models(), tmp_path, run_info=INFO, turns=5, concurrency=1, on_case=stop_after_k
        )
    assert stopped.group_contains(_Abort)
    assert [r["case_id"] for r in _results(tmp_path)] == [c.case_id for c in CASES[:k]]
    assert not (tmp_path / "report.json").exists()

    second = _models()
    summary = await run_agentclinic(CASES, second, tmp_path, run_info=INFO, turns=5, concurrency=1)
    assert _objectives_seen(second) == {c.case_id for c in CASES[k:]}
    assert summary.skipped == k and summary.ran == len(CASES) - k
    assert sorted(r["case_id"] for r in _results(tmp_path)) == sorted(c.case_id for c in CASES)
    assert summary.report["cases_finished"] == len(CASES)
    assert summary.report["correct"] == 1


async def test_cancelled_run_resumes_and_a_torn_results_line_is_rerun(tmp_path: Path) -> None:
    slow = SlowScriptedChatModel(script=role(_doctor).script, delay=0.02)
    models = RoleModels(
        doctor=slow,
        patient=role(lambda m: "It hurts."),
        measurement=role(lambda m: "RESULTS: low"),
        moderator=role(_moderator),
    )
    task = asyncio.create_task(
        run_agentclinic(CASES, models, tmp_path, run_info=INFO, turns=5, concurrency=1)
    )
    results = tmp_path / "results.jsonl"
    while not (results.exists() and results.read_text().count("\n") >= 1):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    finished = [r["case_id"] for r in _results(tmp_path)]
    assert 1 <= len(finished) < len(CASES)
    with results.open("a") as handle:
        handle.write('{"case_id": "cf-dka", "correct": tr')

    again = _models()
    summary = await run_agentclinic(CASES, again, tmp_path, run_info=INFO, turns=5, concurrency=2)
    assert _objectives_seen(again) == {c.case_id for c in CASES} - set(finished)
    assert summary.report["cases_finished"] == len(CASES)
    assert {c["case_id"] for c in summary.report["cases"]} == {c.case_id for c in CASES}


async def test_failed_case_is_reported_and_retried_on_rerun(tmp_path: Path) -> None:
    def flaky(messages: list[BaseMessage]) -> str:
        if CASES[1].objective in system_text(messages):
            raise RuntimeError("model server went away")
        return _doctor(messages)

    broken = role_models(doctor=flaky, measurement=lambda m: "RESULTS: low", moderator=_moderator)
    summary = await run_agentclinic(CASES, broken, tmp_path, run_info=INFO, turns=5)
    assert summary.failures == [
        {"case_id": CASES[1].case_id, "error": "RuntimeError: model server went away"}
    ]
    assert summary.report["cases_finished"] == len(CASES) - 1
    assert "failed and are not counted" in (tmp_path / "report.md").read_text()

    fixed = _models()
    summary = await run_agentclinic(CASES, fixed, tmp_path, run_info=INFO, turns=5)
    assert _objectives_seen(fixed) == {CASES[1].case_id}
    assert summary.failures == [] and summary.report["cases_finished"] == len(CASES)


async def test_rerun_with_a_different_configuration_is_refused(tmp_path: Path) -> None:
    await run_agentclinic(CASES[:1], _models(), tmp_path, run_info=INFO, turns=5)
    with pytest.raises(RunConfigMismatchError, match=r"turns: 5 -> 6"):
        await run_agentclinic(CASES[:1], _models(), tmp_path, run_info=INFO, turns=6)
    with pytest.raises(RunConfigMismatchError, match="doctor_bias"):
        await run_agentclinic(CASES[:1], _models(), tmp_path, run_info=INFO, turns=5, doctor_bias="recency")
    with pytest.raises(RunConfigMismatchError, match="protocol: 'original' -> 'clinicflow'"):
        await run_agentclinic(CASES[:1], _models(), tmp_path, run_info=INFO, turns=5, protocol="clinicflow")
    summary = await run_agentclinic(CASES[:2], _models(), tmp_path, run_info=INFO, turns=5, concurrency=3)
    assert summary.skipped == 1 and summary.ran == 1


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    many = [EncounterCase(**{**CASES[i % len(CASES)].__dict__, "case_id": f"c{i}"}) for i in range(8)]
    slow = SlowScriptedChatModel(script=role(lambda m: "DIAGNOSIS READY: X").script, delay=0.02)
    models = RoleModels(doctor=slow, patient=slow, measurement=slow, moderator=role(lambda m: "No"))
    await run_agentclinic(many, models, tmp_path, run_info=INFO, turns=3, concurrency=3)
    assert slow.max_in_flight == 3


async def test_both_biases_are_applied_to_their_roles(tmp_path: Path) -> None:
    models = role_models(doctor=lambda m: "Any pain?")
    await run_agentclinic(
        CASES[:1],
        models,
        tmp_path,
        run_info=INFO,
        turns=2,
        doctor_bias="confirmation",
        patient_bias="self_diagnosis",
    )
    assert "come to the conclusion that you should be diagnosed with cancer" in system_text(
        models.patient.calls[0].messages
    )
    assert "You are initially confident that the patient has cancer." in system_text(
        models.doctor.calls[0].messages
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert (
        report["run"]["doctor_bias"] == "confirmation" and report["run"]["patient_bias"] == "self_diagnosis"
    )
    assert "Bias: doctor confirmation, patient self_diagnosis" in (tmp_path / "report.md").read_text()


async def test_report_states_protocol_roles_and_differences_from_the_published_setup(tmp_path: Path) -> None:
    info = {**INFO, "models": {"doctor": "default", "patient": "p", "measurement": "m", "moderator": "j"}}
    await run_agentclinic(CASES, _models(), tmp_path, run_info=info, turns=5, max_new_tokens=64)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["protocol"] == "original"
    assert report["roles"] == info["models"]
    differences = report["differences_from_published"]
    assert differences[0].startswith("Protocol `original`: AgentClinic's prompts")
    assert any("patient `p`, measurement `m`, moderator `j`" in d and "GPT-4" in d for d in differences)
    assert "At most 64 new tokens per reply (the original: 200)." in differences
    assert "5 doctor turns allowed (AgentClinic's default: 20)." in differences
    assert any("temperature (0.05) could not be set" in d for d in differences)
    markdown = (tmp_path / "report.md").read_text()
    published = markdown.index("## Published accuracy (%)")
    assert markdown.index("This run's setup differs from the published one:") > published
    assert markdown.index("| MedGemma 27B |") > markdown.index("- Protocol `original`")
