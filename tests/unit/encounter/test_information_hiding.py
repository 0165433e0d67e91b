"""Under the clinicflow variant each role sees only its slice of the scenario, checked on every
AgentClinic dev scenario. (The original protocol shares measurement results with the patient and
patient answers with the measurement reader, as AgentClinic does; test_original.py checks that.)

The measurement fake answers with a marker plus its whole system prompt (every finding and test
result it holds), the most a leaking measurement reader could pass on; none of it may reach the patient.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from clinicflow.agents.encounter import render_info
from clinicflow.evals.agentclinic import SHIPPED_SCENARIOS, load_scenarios
from clinicflow.graphs.encounter import EncounterCase, build_encounter_graph, run_encounter
from tests.unit.encounter.roles import prompt_text, role_models, system_text

REPO = Path(__file__).resolve().parents[3]
DEV = REPO.parent / "shared" / "data" / "agentclinic" / "agentclinic_medqa_dev.jsonl"
MARKER = "LEAK-MARKER-7f3a"


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None:
        yield str(value).strip()


def _doctor_script(case: EncounterCase) -> Any:
    tests = (list(case.test_results) if isinstance(case.test_results, dict) else []) or [
        "Complete_Blood_Count"
    ]
    turns = iter(
        [
            "What brings you in today?",
            f"REQUEST TEST: {tests[0]}",
            "Please tell me what the results mean for you. Anything else?",
            f"REQUEST TEST: {tests[-1]}",
            "How have you been sleeping?",
            "DIAGNOSIS READY: Something benign",
        ]
    )
    return lambda messages: next(turns)


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).lower()


async def _check(case: EncounterCase) -> None:
    def measurement(messages: list[BaseMessage]) -> str:
        return f"RESULTS: {MARKER} {system_text(messages)}"

    models = role_models(
        doctor=_doctor_script(case),
        patient=lambda m: "It has been bothering me for a while.",
        measurement=measurement,
        moderator=lambda m: "No",
    )
    outcome = await run_encounter(build_encounter_graph(models, protocol="clinicflow", max_turns=10), case)
    assert outcome.finished == "diagnosis"
    assert len(models.measurement.calls) == 2
    assert len(models.patient.calls) == 3

    patient_info = _words(render_info(case.patient_info))
    diagnosis = _words(case.correct_diagnosis)
    results = {
        _words(leaf)
        for leaf in _leaves(case.test_results)
        if len(leaf) >= 8 and _words(leaf) not in patient_info
    }
    for call in models.patient.calls:
        seen = _words(prompt_text(call.messages))
        assert MARKER.lower() not in seen, case.case_id
        assert "results:" not in seen, case.case_id
        assert diagnosis not in seen, case.case_id
        leaked = [r for r in results if r in seen]
        assert not leaked, (case.case_id, leaked)

    measurement_data = _words(render_info([case.exam_findings, case.test_results]))
    for call in models.measurement.calls:
        seen = _words(prompt_text(call.messages))
        if diagnosis not in measurement_data:
            assert diagnosis not in seen, case.case_id
        history = case.patient_info.get("History") if isinstance(case.patient_info, dict) else None
        if isinstance(history, str) and len(history) > 20:
            assert _words(history) not in seen, case.case_id
        assert "correct diagnosis" not in seen, case.case_id

    moderator_seen = _words(prompt_text(models.moderator.calls[0].messages))
    assert _words(case.objective) not in moderator_seen
    assert not [r for r in results if r in moderator_seen]


def _dev_cases() -> list[EncounterCase]:
    if not DEV.exists():
        pytest.skip(f"AgentClinic dev scenarios not found at {DEV}")
    loaded = load_scenarios(DEV)
    assert loaded.errors == []
    return loaded.cases


async def test_information_hiding_on_every_dev_scenario() -> None:
    cases = _dev_cases()
    assert len(cases) == 105
    for case in cases:
        await _check(case)


async def test_information_hiding_on_the_shipped_scenarios() -> None:
    for case in load_scenarios(SHIPPED_SCENARIOS / "clinicflow_osce.jsonl").cases:
        await _check(case)
