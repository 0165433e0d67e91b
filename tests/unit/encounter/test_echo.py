"""A model that only echoes its prompt scores 0, under both protocols, through the graph and the runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage

from clinicflow.agents.encounter import PROTOCOLS, message_text, repeats_prompt
from clinicflow.evals.agentclinic import SHIPPED_SCENARIOS, load_scenarios, run_agentclinic
from clinicflow.graphs.encounter import EncounterCase, RoleModels
from tests.unit.encounter.roles import role

REPO = Path(__file__).resolve().parents[3]
DEV = REPO.parent / "shared" / "data" / "agentclinic" / "agentclinic_medqa_dev.jsonl"

Echo = Callable[[list[BaseMessage]], str]


def echo_system(messages: list[BaseMessage]) -> str:
    return messages[0].text


def echo_user(messages: list[BaseMessage]) -> str:
    return message_text(messages[-1])


def echo_both(messages: list[BaseMessage]) -> str:
    return messages[0].text + "\n" + message_text(messages[-1])


ECHOES = {"system": echo_system, "user": echo_user, "both": echo_both}


def _cases() -> list[EncounterCase]:
    cases = load_scenarios(SHIPPED_SCENARIOS / "clinicflow_osce.jsonl").cases
    if DEV.exists():
        cases += load_scenarios(DEV, limit=20).cases
    return cases


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("echo", list(ECHOES))
async def test_an_echo_only_model_in_every_role_scores_zero(tmp_path: Path, protocol: str, echo: str) -> None:
    model = role(ECHOES[echo], calls=100_000)
    summary = await run_agentclinic(
        _cases(), RoleModels(model, model, model, model), tmp_path, protocol=protocol, turns=5
    )
    report = summary.report
    assert report["cases_finished"] == len(_cases()) and summary.failures == []
    assert report["correct"] == 0 and report["accuracy"] == 0
    assert report["echo_turns"] > 0
    markdown = (tmp_path / "report.md").read_text()
    assert f"Protocol `{protocol}`" in markdown


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("echo", list(ECHOES))
async def test_an_echoing_doctor_scores_zero_even_with_a_moderator_that_always_says_yes(
    tmp_path: Path, protocol: str, echo: str
) -> None:
    doctor = role(ECHOES[echo], calls=100_000)
    patient = role(lambda m: "It hurts when I breathe.", calls=100_000)
    measurement = role(lambda m: "RESULTS: NORMAL READINGS", calls=100_000)
    yes = role(lambda m: "Yes", calls=100_000)
    summary = await run_agentclinic(
        _cases(), RoleModels(doctor, patient, measurement, yes), tmp_path, protocol=protocol, turns=5
    )
    assert summary.report["correct"] == 0
    assert yes.calls == [], "an echo never reaches the moderator"
    results = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["finished"] for r in results} == {"turn_limit"}
    assert all(r["echo_turns"] == 5 for r in results)


def test_the_guard_needs_a_real_span_of_the_prompt() -> None:
    fixed = ('Once you have decided to make a diagnosis please type "DIAGNOSIS READY: [diagnosis here]"',)
    assert repeats_prompt('Once you have decided to make a diagnosis please type "DIAGNOSIS READY', fixed)
    assert not repeats_prompt("I have decided to make a diagnosis. DIAGNOSIS READY: Silicosis", fixed)
    assert not repeats_prompt("DIAGNOSIS READY: [diagnosis here]", fixed)
    assert repeats_prompt("... here was the PATIENT response: ...", ("Here was the patient response:",))
    assert not repeats_prompt("the patient response was good", ("Here was the patient response:",))
    assert not repeats_prompt("anything", ())
