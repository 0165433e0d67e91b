"""The `original` protocol against AgentClinic's rules, case by case and against the oracle in
`original_rules.py` (whole encounters: every prompt, every decision, the score)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import Field

from clinicflow.agents.encounter import (
    DOCTOR_BIAS_NAMES,
    PATIENT_BIAS_NAMES,
    OriginalProtocol,
    Prompt,
    get_protocol,
    message_text,
)
from clinicflow.agents.encounter import original as rules
from clinicflow.evals.agentclinic import SHIPPED_SCENARIOS, load_scenarios, run_agentclinic
from clinicflow.evals.agentclinic.scenarios import scenario_case
from clinicflow.graphs.encounter import EncounterCase, RoleModels, build_encounter_graph, run_encounter
from tests.fakes import ScriptedChatModel
from tests.unit.encounter import original_rules as oracle
from tests.unit.encounter.recorded_replies import DOCTOR_REPLIES, ECHOES, MODERATOR_REPLIES

REPO = Path(__file__).resolve().parents[3]
DEV = REPO.parent / "shared" / "data" / "agentclinic" / "agentclinic_medqa_dev.jsonl"
SHIPPED = SHIPPED_SCENARIOS / "clinicflow_osce.jsonl"
ORIGINAL = OriginalProtocol()
NO_PROMPT = Prompt([])

Reply = Callable[[str, str, bool], str]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _ours(text: str) -> str:
    """A doctor reply's action as the original protocol takes it (whitespace collapsed first)."""
    return ORIGINAL.doctor_action(ORIGINAL.reply_text("doctor", text), NO_PROMPT).kind


def _oracles(text: str) -> str:
    answer = oracle.answer_of(text)
    if oracle.ends_encounter(answer):
        return "diagnosis"
    return "test" if oracle.requests_test(answer) else "question"


# -- decisions, rule by rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "correct"),
    [
        ("Yes", True),
        ("yes", True),
        ("YES", True),
        ("Yes.", False),
        (" yes", False),
        ("yes ", False),
        ("Yes\n", False),
        ("No", False),
        ("Yes, they match", False),
        ("**Yes**", False),
        ("", False),
    ],
)
def test_moderator_rule_is_exact_equality_with_yes(reply: str, correct: bool) -> None:
    verdict = ORIGINAL.verdict(ORIGINAL.reply_text("moderator", reply))
    assert verdict.correct is correct
    assert oracle.moderator_says_correct(oracle.answer_of(reply)) is correct


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("DIAGNOSIS READY: Silicosis", "diagnosis"),
        ("diagnosis ready: silicosis", "question"),
        ("Diagnosis Ready: Silicosis", "question"),
        ("**DIAGNOSIS READY:** Silicosis", "diagnosis"),
        ("**DIAGNOSIS** READY: Silicosis", "question"),
        ("DIAGNOSIS\n  READY: Silicosis", "diagnosis"),
        ("REQUEST TEST: Chest_X-Ray", "test"),
        ("request test: chest x-ray", "question"),
        ("**REQUEST TEST:** CBC", "test"),
        ("REQUEST TEST: CBC. DIAGNOSIS READY: Anemia", "diagnosis"),
        ("Any fever?", "question"),
    ],
)
def test_actions_are_case_sensitive_substrings_after_whitespace_collapse(reply: str, kind: str) -> None:
    assert _ours(reply) == kind == _oracles(reply)


def test_original_and_ours_agree_on_recorded_replies() -> None:
    for reply in DOCTOR_REPLIES:
        assert _ours(reply) == _oracles(reply), reply
    for reply in MODERATOR_REPLIES:
        ours = ORIGINAL.verdict(ORIGINAL.reply_text("moderator", reply)).correct
        assert ours is oracle.moderator_says_correct(oracle.answer_of(reply)), reply


def test_echoes_are_the_one_deviation() -> None:
    """The original takes the action in an echoed prompt; the echo guard takes none."""
    prompt = ORIGINAL.doctor_prompt(
        _case(_records(SHIPPED)[0]),
        [],
        turn=1,
        max_turns=20,
        bias=None,
        image=None,
        image_request=False,
        with_tools=False,
    )
    for echo in ECHOES:
        action = ORIGINAL.doctor_action(ORIGINAL.reply_text("doctor", echo), prompt)
        assert (action.kind, action.echo) == ("question", True), echo
    assert [_oracles(e) for e in ECHOES[:4]] == ["diagnosis", "diagnosis", "diagnosis", "test"]
    for reply in DOCTOR_REPLIES:
        assert not ORIGINAL.doctor_action(ORIGINAL.reply_text("doctor", reply), prompt).echo, reply


def test_generation_settings_and_texts_are_the_originals() -> None:
    assert (ORIGINAL.temperature, ORIGINAL.max_new_tokens) == (0.05, 200)
    assert get_protocol().name == "original"
    assert ORIGINAL.doctor_biases == oracle.DOCTOR_BIAS
    assert ORIGINAL.patient_biases == oracle.PATIENT_BIAS
    assert set(oracle.DOCTOR_BIAS) == set(DOCTOR_BIAS_NAMES)
    assert set(oracle.PATIENT_BIAS) == set(PATIENT_BIAS_NAMES)
    assert rules.MODERATOR_SYSTEM == oracle.MODERATOR_SYSTEM
    assert rules.collapse_whitespace(" a \n\t b  ") == " a b "


# -- whole encounters against the oracle ----------------------------------------------------------


def _case(record: dict[str, Any], base_dir: Path = SHIPPED.parent) -> EncounterCase:
    return scenario_case(record, line=1, base_dir=base_dir)[1]


class _Log:
    """Role models for our graph that reply like the oracle's role functions and log every call."""

    def __init__(self) -> None:
        self.calls: list[oracle.Call] = []

    def model(self, role: str, reply: Reply) -> ScriptedChatModel:
        def item(messages: list[BaseMessage]) -> AIMessage:
            user = messages[-1]
            image = isinstance(user.content, list) and any(
                isinstance(b, dict) and b.get("type") == "image_url" for b in user.content
            )
            self.calls.append(oracle.Call(role, messages[0].text, message_text(user), image))
            return AIMessage(content=reply(messages[0].text, message_text(user), image))

        return ScriptedChatModel(script=[item] * 500)


def _script(replies: list[str]) -> Reply:
    turns: Iterator[str] = iter(replies)
    return lambda system, user, image: next(turns)


def _patient(system: str, user: str, image: bool) -> str:
    return "It started a few  weeks ago.\nIt gets worse at night. "


def _measurement(system: str, user: str, image: bool) -> str:
    return "RESULTS:\n  Hemoglobin 9.1 g/dL;\tMCV 70 fL"


async def _both(
    record: dict[str, Any],
    case: EncounterCase,
    doctor: list[str],
    *,
    moderator: str = "Yes",
    turns: int = 20,
    **options: Any,
) -> tuple[oracle.Encounter, list[oracle.Call], Any]:
    expected = oracle.simulate(
        record,
        doctor=_script(doctor),
        patient=_patient,
        measurement=_measurement,
        moderator=lambda s, u, i: moderator,
        total_inferences=turns,
        **options,
    )
    log = _Log()
    models = RoleModels(
        doctor=log.model("doctor", _script(doctor)),
        patient=log.model("patient", _patient),
        measurement=log.model("measurement", _measurement),
        moderator=log.model("moderator", lambda s, u, i: moderator),
    )
    graph = build_encounter_graph(
        models,
        max_turns=turns,
        doctor_bias=options.get("doctor_bias"),
        patient_bias=options.get("patient_bias"),
        image_request=options.get("img_request", False),
    )
    outcome = await run_encounter(graph, case)
    return expected, log.calls, outcome


SCRIPT = [
    "Hello, I'm Dr. Agent. What brings you in?",
    "REQUEST TEST: Complete_Blood_Count",
    "Thank you.\n\nAny weight loss?  diagnosis ready: maybe anemia",
    "REQUEST TEST: Ferritin",
    "**DIAGNOSIS READY:** Iron deficiency anemia",
]


async def test_every_prompt_and_the_score_match_the_original_on_the_shipped_scenarios() -> None:
    for record in _records(SHIPPED):
        expected, calls, outcome = await _both(record, _case(record), SCRIPT)
        assert calls == expected.calls
        assert outcome.turns == expected.doctor_turns == 5
        assert outcome.correct is expected.correct is True


async def test_every_prompt_matches_the_original_on_every_dev_scenario() -> None:
    if not DEV.exists():
        pytest.skip(f"AgentClinic dev scenarios not found at {DEV}")
    for record, case in zip(_records(DEV), load_scenarios(DEV).cases, strict=True):
        expected, calls, outcome = await _both(record, case, SCRIPT, moderator="Yes.")
        assert calls == expected.calls, case.case_id
        assert outcome.correct is expected.correct is False


@pytest.mark.parametrize("reply", MODERATOR_REPLIES)
async def test_the_moderator_reply_scores_as_in_the_original(reply: str) -> None:
    record = _records(SHIPPED)[0]
    expected, calls, outcome = await _both(record, _case(record), SCRIPT, moderator=reply)
    assert calls == expected.calls
    assert outcome.correct is expected.correct
    assert outcome.moderator_reply == oracle.answer_of(reply)


async def test_the_whole_doctor_reply_goes_to_the_moderator() -> None:
    record = _records(SHIPPED)[0]
    _, calls, outcome = await _both(record, _case(record), SCRIPT)
    assert calls[-1].role == "moderator"
    assert "Here was the doctor dialogue: **DIAGNOSIS READY:** Iron deficiency anemia\n" in calls[-1].user
    assert outcome.diagnosis == "Iron deficiency anemia"


async def test_histories_are_shared_as_in_the_original() -> None:
    record = _records(SHIPPED)[0]
    _, calls, _ = await _both(record, _case(record), SCRIPT)
    reading = "RESULTS: Hemoglobin 9.1 g/dL; MCV 70 fL"
    answer = "It started a few weeks ago. It gets worse at night. "
    patient = [c.user for c in calls if c.role == "patient"]
    measurement = [c.user for c in calls if c.role == "measurement"]
    assert patient[1] == (
        "\nHere is a history of your dialogue: Hello, I'm Dr. Agent. What brings you in?\n\n"
        f"{answer}\n\n{reading}\n\n\n Here was the doctor response: Thank you. Any weight loss? "
        "diagnosis ready: maybe anemiaNow please continue your dialogue\nPatient: "
    )
    assert measurement[1] == (
        f"\nHere is a history of the dialogue: {answer}\n\nREQUEST TEST: Complete_Blood_Count\n\n"
        f"{reading}\n\n{answer}\n\n\n Here was the doctor measurement request: REQUEST TEST: Ferritin"
    )
    doctor = [c.user for c in calls if c.role == "doctor"]
    assert doctor[0] == (
        "\nHere is a history of your dialogue: \n Here was the patient response: Now please continue your "
        "dialogue\nDoctor: "
    )
    assert doctor[2].startswith(
        "\nHere is a history of your dialogue: \n\nHello, I'm Dr. Agent. What brings you in?\n\n"
        f"{answer}\n\nREQUEST TEST: Complete_Blood_Count\n\n\n Here was the patient response: {reading}"
    )


async def test_final_question_and_turn_limit_as_in_the_original() -> None:
    record = _records(SHIPPED)[0]
    expected, calls, outcome = await _both(record, _case(record), ["Tell me more."] * 4, turns=4)
    assert calls == expected.calls
    doctor = [c for c in calls if c.role == "doctor"]
    assert len(doctor) == 4 and not expected.diagnosed
    assert doctor[-1].user.endswith(
        "This is the final question. Please provide a diagnosis.\nNow please continue your dialogue\nDoctor: "
    )
    assert all("final question" not in c.user for c in doctor[:-1])
    assert "You are only allowed to ask 4 questions total" in doctor[0].system
    assert "You have asked 3 questions so far." in doctor[-1].system
    assert outcome.finished == "turn_limit" and outcome.correct is False
    assert not [c for c in calls if c.role == "moderator"]

    expected, calls, _ = await _both(record, _case(record), ["DIAGNOSIS READY: X"], turns=1)
    assert calls == expected.calls
    assert "Here was the patient response: This is the final question." in calls[0].user


async def test_both_biases_at_once_as_in_the_original() -> None:
    record = _records(SHIPPED)[0]
    expected, calls, _ = await _both(
        record, _case(record), SCRIPT, doctor_bias="confirmation", patient_bias="self_diagnosis"
    )
    assert calls == expected.calls
    doctor = next(c for c in calls if c.role == "doctor")
    patient = next(c for c in calls if c.role == "patient")
    assert oracle.DOCTOR_BIAS["confirmation"] in doctor.system
    assert oracle.PATIENT_BIAS["self_diagnosis"] in patient.system
    assert "cancer" not in next(c for c in calls if c.role == "measurement").system


def _nejm(tmp_path: Path) -> tuple[dict[str, Any], EncounterCase]:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "IC20240111.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    record = {
        "image_url": "https://csvc.nejm.org/ContentServer/images?id=IC20240111&width=1500&height=4000",
        "question": "What is the most likely diagnosis?",
        "patient_info": "You are a 55-year-old woman with darkening skin on your face.",
        "physical_exams": "Skin biopsy: yellow-brown banana-shaped bodies in the dermis.",
        "answers": [{"text": "Melasma", "correct": False}, {"text": "Exogenous ochronosis", "correct": True}],
    }
    return record, _case(record, tmp_path)


NEJM_SCRIPT = [
    "What do you see?",
    "Could I see the images? REQUEST IMAGES",
    "DIAGNOSIS READY: Exogenous ochronosis",
]


async def test_nejm_image_goes_with_every_doctor_prompt_as_in_the_original(tmp_path: Path) -> None:
    record, case = _nejm(tmp_path)
    expected, calls, outcome = await _both(record, case, NEJM_SCRIPT)
    assert calls == expected.calls
    assert [c.image for c in calls if c.role == "doctor"] == [True, True, True]
    assert outcome.image_turns == 3 and outcome.image_not_sent is None
    assert "Below is all of the information you have. What is the most likely diagnosis?." in calls[0].system


async def test_nejm_image_on_request_as_in_the_original(tmp_path: Path) -> None:
    record, case = _nejm(tmp_path)
    expected, calls, _ = await _both(record, case, NEJM_SCRIPT, img_request=True)
    assert calls == expected.calls
    assert [c.image for c in calls if c.role == "doctor"] == [False, False, True]
    assert rules.IMAGE_REQUEST in calls[0].system


async def test_a_text_only_doctor_gets_no_image_and_the_result_says_so(tmp_path: Path) -> None:
    _, case = _nejm(tmp_path)
    log = _Log()
    doctor = log.model("doctor", _script(NEJM_SCRIPT))
    object.__setattr__(doctor, "takes_images", lambda: False)
    models = RoleModels(doctor, log.model("patient", _patient), doctor, log.model("moderator", _patient))
    outcome = await run_encounter(build_encounter_graph(models), case)
    assert not any(c.image for c in log.calls)
    assert outcome.image_turns == 0
    assert outcome.image_not_sent is not None and "text-only" in outcome.image_not_sent
    assert "text-only" not in log.calls[0].system, "the original's prompt stays as it is"


class _TunableFake(ScriptedChatModel):
    """A fake with the model layer's generation fields; records them at every call."""

    temperature: float = 0.0
    max_new_tokens: int = 256
    settings_seen: list[tuple[float, int]] = Field(default_factory=list)

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Any:
        self.settings_seen.append((self.temperature, self.max_new_tokens))
        return super()._next(messages, kwargs)


async def test_generation_settings_reach_every_role(tmp_path: Path) -> None:
    fake = _TunableFake(
        script=[lambda m: AIMessage("DIAGNOSIS READY: X") if "Doctor: " in m[-1].text else AIMessage("No")]
        * 10
    )
    cases = load_scenarios(SHIPPED).cases[:1]
    await run_agentclinic(cases, RoleModels(fake, fake, fake, fake), tmp_path, turns=3)
    assert set(fake.settings_seen) == {(0.05, 200)}
    assert fake.temperature == 0.0, "the caller's model is left as it was"
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["protocol"] == "original"
    assert manifest["generation"] == {"temperature": 0.05, "max_new_tokens": 200, "not_applied_to": []}

    fake.settings_seen.clear()
    await run_agentclinic(
        cases, RoleModels(fake, fake, fake, fake), tmp_path / "b", turns=3, max_new_tokens=64
    )
    assert set(fake.settings_seen) == {(0.05, 64)}
