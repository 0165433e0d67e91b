"""The clinicflow variant on the encounter graph, with scripted role models (the original protocol's
graph tests are in test_original.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import tool
from langgraph.prebuilt import InjectedState

from clinicflow.agents.encounter import FINAL_QUESTION, TEXT_ONLY_IMAGE_NOTE
from clinicflow.graphs.encounter import (
    EncounterCase,
    RoleModels,
    build_encounter_graph,
    route_after_doctor,
    run_encounter,
)
from tests.fakes import tool_call
from tests.unit.encounter.roles import prompt_text, role_models

SNAPSHOTS = Path(__file__).parent / "snapshots"

CASE = EncounterCase(
    case_id="c1",
    objective="Assess a patient with a chronic cough.",
    patient_info={"Demographics": "60-year-old male", "History": "Cough for a year. Worked in a quarry."},
    exam_findings={"Respiratory": "Fine crackles in both upper zones"},
    test_results={"Chest_X_Ray": "Eggshell calcification of hilar nodes"},
    correct_diagnosis="Silicosis",
)


def _graph(models: RoleModels, **options: Any) -> Any:
    return build_encounter_graph(models, protocol="clinicflow", **options)


def _last_user(messages: list[BaseMessage]) -> str:
    return messages[-1].text


async def test_turn_limit_injects_the_final_question_once_and_ends_without_a_verdict_call() -> None:
    models = role_models(doctor=lambda m: "How long have you had it?")
    graph = _graph(models, max_turns=4)

    outcome = await run_encounter(graph, CASE)

    doctor_prompts = [_last_user(c.messages) for c in models.doctor.calls]
    assert len(doctor_prompts) == 4
    assert [FINAL_QUESTION in p for p in doctor_prompts] == [False, False, False, True]
    assert len(models.patient.calls) == 3
    assert models.moderator.calls == []
    assert outcome.finished == "turn_limit"
    assert outcome.turns == 4
    assert outcome.diagnosis is None
    assert outcome.correct is False
    assert [u["text"] for u in outcome.transcript if u["role"] == "system"] == [FINAL_QUESTION]


async def test_diagnosis_on_the_final_turn_is_judged() -> None:
    def doctor(messages: list[BaseMessage]) -> str:
        return "DIAGNOSIS READY: Silicosis" if FINAL_QUESTION in _last_user(messages) else "Any fever?"

    models = role_models(doctor=doctor, moderator=lambda m: "Yes")
    outcome = await run_encounter(_graph(models, max_turns=2), CASE)

    assert outcome.turns == 2
    assert outcome.finished == "diagnosis"
    assert outcome.correct is True
    assert len(models.moderator.calls) == 1


async def test_default_turn_limit_is_twenty() -> None:
    models = role_models(doctor=lambda m: "Tell me more.")
    outcome = await run_encounter(_graph(models), CASE)
    assert outcome.turns == 20
    assert len(models.doctor.calls) == 20


async def test_test_requests_go_to_measurement_and_results_back_to_the_doctor() -> None:
    replies = iter(["REQUEST TEST: Chest_X-Ray", "Do you smoke?", "**DIAGNOSIS READY:** Silicosis."])
    models = role_models(
        doctor=lambda m: next(replies),
        patient=lambda m: "Patient: No, never.\nDoctor: ok",
        measurement=lambda m: "Eggshell calcification of hilar nodes",
        moderator=lambda m: "**Yes.**",
    )
    outcome = await run_encounter(_graph(models, max_turns=10), CASE)

    assert outcome.tests_requested == ["Chest_X-Ray"]
    assert len(models.measurement.calls) == 1
    assert "Chest_X-Ray" in _last_user(models.measurement.calls[0].messages)
    assert len(models.patient.calls) == 1
    assert "Do you smoke?" in _last_user(models.patient.calls[0].messages)
    second_doctor_prompt = _last_user(models.doctor.calls[1].messages)
    assert "Measurement: RESULTS: Eggshell calcification of hilar nodes" in second_doctor_prompt
    third_doctor_prompt = _last_user(models.doctor.calls[2].messages)
    assert "Patient: No, never." in third_doctor_prompt
    assert "Doctor: ok" not in third_doctor_prompt
    roles = [(u["turn"], u["role"]) for u in outcome.transcript]
    assert roles == [
        (1, "doctor"),
        (1, "measurement"),
        (2, "doctor"),
        (2, "patient"),
        (3, "doctor"),
        (3, "moderator"),
    ]
    assert outcome.diagnosis == "Silicosis"
    assert outcome.correct is True


@pytest.mark.parametrize(
    "reply",
    [
        "DIAGNOSIS READY: silicosis",
        "**DIAGNOSIS READY:** Silicosis.",
        "Diagnosis ready - [Silicosis]",
        "diagnosis READY:\nSilicosis",
    ],
)
async def test_diagnosis_variants_end_the_encounter_and_reach_the_moderator(reply: str) -> None:
    models = role_models(doctor=lambda m: reply, moderator=lambda m: "yes")
    outcome = await run_encounter(_graph(models), CASE)
    assert outcome.turns == 1
    assert outcome.diagnosis is not None and outcome.diagnosis.lower() == "silicosis"
    moderator_prompt = prompt_text(models.moderator.calls[0].messages)
    assert "Silicosis" in moderator_prompt
    assert CASE.objective not in moderator_prompt
    assert "quarry" not in moderator_prompt
    assert "Eggshell" not in moderator_prompt


@pytest.mark.parametrize(
    ("reply", "correct"),
    [
        ("Yes", True),
        ("**YES.**", True),
        ("yes, same disease", True),
        ("No.", False),
        ("**no**", False),
        ("Unclear", False),
    ],
)
async def test_moderator_reply_sets_the_verdict(reply: str, correct: bool) -> None:
    models = role_models(doctor=lambda m: "DIAGNOSIS READY: Pneumoconiosis", moderator=lambda m: reply)
    outcome = await run_encounter(_graph(models), CASE)
    assert outcome.correct is correct
    assert outcome.moderator_reply == reply


async def test_empty_diagnosis_is_incorrect_without_asking_the_moderator() -> None:
    models = role_models(doctor=lambda m: "DIAGNOSIS READY:", moderator=lambda m: "Yes")
    outcome = await run_encounter(_graph(models), CASE)
    assert outcome.finished == "diagnosis"
    assert outcome.correct is False
    assert models.moderator.calls == []


async def test_test_request_on_the_final_turn_is_not_run() -> None:
    models = role_models(doctor=lambda m: "REQUEST TEST: CT chest")
    outcome = await run_encounter(_graph(models, max_turns=2), CASE)
    assert len(models.measurement.calls) == 1
    assert outcome.tests_requested == ["CT chest"]
    assert outcome.finished == "turn_limit"


def test_router_is_pure() -> None:
    assert route_after_doctor({"case": CASE, "last_action": "question"}) == "patient"
    assert route_after_doctor({"case": CASE, "last_action": "test"}) == "measurement"
    assert route_after_doctor({"case": CASE, "last_action": "test", "finished": "turn_limit"}) == "moderator"
    assert (
        route_after_doctor({"case": CASE, "last_action": "diagnosis", "finished": "diagnosis"}) == "moderator"
    )
    pending = AIMessage(content="", tool_calls=[tool_call("search_guidelines", query="cough")])
    assert route_after_doctor({"case": CASE, "doctor_scratch": [pending]}) == "doctor_tools"


@tool
def search_guidelines(query: str) -> str:
    """Search clinical guidelines."""
    return f"[guideline: occupational lung disease] result for {query}"


@tool
def record_lookup(topic: str, patient_id: Annotated[str, InjectedState("patient_id")]) -> str:
    """Look up the patient's record."""
    return f"record of {patient_id} about {topic}"


@pytest.mark.parametrize("tools", [False, True], ids=["protocol", "doctor-tools"])
def test_graph_shape_snapshot(tools: bool) -> None:
    models = role_models()
    graph = _graph(models, doctor_tools=[search_guidelines] if tools else [])
    drawing = graph.get_graph().draw_mermaid()
    snapshot = SNAPSHOTS / f"encounter{'_tools' if tools else ''}.mmd"
    assert drawing == snapshot.read_text(encoding="utf-8")


async def test_doctor_tools_variant_runs_tools_within_a_turn_with_the_patient_from_state() -> None:
    scripted = iter(
        [
            AIMessage(content="", tool_calls=[tool_call("search_guidelines", query="silica exposure")]),
            AIMessage(content="", tool_calls=[tool_call("record_lookup", topic="imaging")]),
            AIMessage(content="DIAGNOSIS READY: Silicosis"),
        ]
    )
    models = role_models(doctor=lambda m: next(scripted), moderator=lambda m: "Yes")
    graph = _graph(models, max_turns=3, doctor_tools=[search_guidelines, record_lookup])
    case = EncounterCase(**{**CASE.__dict__, "patient_id": "pat-7"})

    outcome = await run_encounter(graph, case)

    assert outcome.turns == 1
    assert outcome.correct is True
    assert [u["role"] for u in outcome.transcript] == [
        "tool_call",
        "tool",
        "tool_call",
        "tool",
        "doctor",
        "moderator",
    ]
    tool_lines = [u["text"] for u in outcome.transcript if u["role"] == "tool"]
    assert "result for silica exposure" in tool_lines[0]
    assert tool_lines[1] == "record of pat-7 about imaging"
    third = models.doctor.calls[2]
    assert "record of pat-7 about imaging" in prompt_text(third.messages)
    assert "Beyond the standard AgentClinic protocol" in third.messages[0].text
    assert sorted(third.tool_names) == ["record_lookup", "search_guidelines"]
    assert "patient_id" not in str(third.tools)


async def test_doctor_tool_rounds_are_bounded() -> None:
    def doctor(messages: list[BaseMessage]) -> AIMessage:
        return AIMessage(content="", tool_calls=[tool_call("search_guidelines", query="x")])

    models = role_models(doctor=doctor)
    graph = _graph(models, max_turns=1, doctor_tools=[search_guidelines], max_tool_calls=2)
    outcome = await run_encounter(graph, CASE)

    assert [c.tools != [] for c in models.doctor.calls] == [True, True, False]
    assert outcome.finished == "turn_limit"


async def test_nejm_image_goes_to_the_doctor_only_and_a_missing_one_is_stated(tmp_path: Path) -> None:
    image = tmp_path / "case.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    models = role_models(doctor=lambda m: "Where is the rash?")
    with_image = EncounterCase(**{**CASE.__dict__, "image": image})
    await run_encounter(_graph(models, max_turns=2), with_image)

    content = models.doctor.calls[0].messages[-1].content
    assert isinstance(content, list) and isinstance(content[1], dict)
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert all(isinstance(m.content, str) for c in models.patient.calls for m in c.messages)

    models = role_models(doctor=lambda m: "Where is the rash?")
    note = "(The image for this case is not available offline: https://example.org/x.png.)"
    without = EncounterCase(**{**CASE.__dict__, "image_note": note})
    await run_encounter(_graph(models, max_turns=1), without)
    assert note in models.doctor.calls[0].messages[0].text


async def test_a_text_only_doctor_model_gets_a_note_instead_of_the_image(tmp_path: Path) -> None:
    image = tmp_path / "case.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    models = role_models(doctor=lambda m: "Where is the rash?")
    object.__setattr__(models.doctor, "takes_images", lambda: False)
    await run_encounter(_graph(models, max_turns=1), EncounterCase(**{**CASE.__dict__, "image": image}))

    system, user = models.doctor.calls[0].messages[:2]
    assert isinstance(user.content, str)
    assert TEXT_ONLY_IMAGE_NOTE in system.text
