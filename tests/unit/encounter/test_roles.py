"""The clinicflow variant's reading of replies and its prompts, and bias names (no graph, no model)."""

from __future__ import annotations

import pytest

from clinicflow.agents.encounter import (
    FINAL_QUESTION,
    ClinicflowProtocol,
    UnknownBiasError,
    Utterance,
    clean_reply,
    parse_doctor_reply,
    parse_moderator_reply,
    render_info,
    validate_bias,
)
from clinicflow.agents.encounter.variant import BIASES
from clinicflow.graphs.encounter import EncounterCase, RoleModels, build_encounter_graph
from tests.unit.encounter.recorded_replies import MODERATOR_REPLIES
from tests.unit.encounter.roles import role

VARIANT = ClinicflowProtocol()
CASE = EncounterCase(
    case_id="c1",
    objective="Assess chest pain.",
    patient_info={"Demographics": "50-year-old male"},
    exam_findings={},
    test_results={},
    correct_diagnosis="Angina",
)

DOCTOR_BIASES = {
    "recency", "frequency", "false_consensus", "confirmation", "status_quo", "gender", "race",
    "sexual_orientation", "cultural", "education", "religion", "socioeconomic",
}  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "diagnosis"),
    [
        ("DIAGNOSIS READY: Silicosis", "Silicosis"),
        ("diagnosis ready: silicosis.", "silicosis"),
        ("**DIAGNOSIS READY:** Seborrheic keratosis", "Seborrheic keratosis"),
        ("__Diagnosis Ready__ - [Lichen sclerosus]", "Lichen sclerosus"),
        ('### DIAGNOSIS READY\n\n  "Tetralogy of Fallot"  ', "Tetralogy of Fallot"),
        ("Thank you. Diagnosis  ready: MEN1!\nI will explain next steps.", "MEN1"),
        ("DIAGNOSIS READY:  `Chronic_Granulomatous_Disease`", "Chronic_Granulomatous_Disease"),
    ],
)
def test_diagnosis_variants_are_parsed(reply: str, diagnosis: str) -> None:
    assert parse_doctor_reply(reply)[:2] == ("diagnosis", diagnosis)


@pytest.mark.parametrize(
    ("reply", "test"),
    [
        ("REQUEST TEST: Chest_X-Ray", "Chest_X-Ray"),
        ("Let me check. request test: complete blood count.", "complete blood count"),
        ("**REQUEST TEST:** Serum B12 level. Then we'll talk.", "Serum B12 level"),
        ("Request Test - [Thyroid function tests]", "Thyroid function tests"),
    ],
)
def test_test_requests_are_parsed(reply: str, test: str) -> None:
    assert parse_doctor_reply(reply)[:2] == ("test", test)


def test_diagnosis_wins_over_a_test_request_and_plain_text_is_a_question() -> None:
    assert parse_doctor_reply("REQUEST TEST: CBC\nDIAGNOSIS READY: Anemia").kind == "diagnosis"
    assert parse_doctor_reply("How long have you had the cough?")[:2] == (
        "question",
        "How long have you had the cough?",
    )


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Yes", True),
        ("yes.", True),
        ("**YES**", True),
        ("Yes, they are the same disease.", True),
        ("Answer: yes", True),
        ("Moderator: **No**", False),
        ("No", False),
        ("no!", False),
        ("**No.** The diagnoses differ.", False),
        ("`NO`", False),
        ("I cannot tell", None),
        ("Not the same", None),
        ("The diagnoses are the same: yes", None),
        ("You decide whether the two diagnoses are the same. Answer only Yes or No, nothing else.", None),
        ("", None),
    ],
)
def test_moderator_replies_are_parsed(reply: str, verdict: bool | None) -> None:
    assert parse_moderator_reply(reply) is verdict


def test_an_echoed_moderator_prompt_never_counts_as_yes() -> None:
    prompt = VARIANT.moderator_prompt(doctor_text="x", diagnosis="Angina", correct="Angina")
    assert prompt is not None
    for message in prompt.messages:
        assert VARIANT.verdict(VARIANT.reply_text("moderator", message.text)).correct is False
    yes = [r for r in MODERATOR_REPLIES if r.strip().lower().startswith("yes")]
    assert yes and all(VARIANT.verdict(VARIANT.reply_text("moderator", r)).correct for r in yes)


def test_clean_reply_strips_own_label_and_cuts_the_next_speaker() -> None:
    assert clean_reply("Doctor: What brings you in?\nPatient: My chest hurts.\nDoctor: Since when?") == (
        "What brings you in?"
    )
    assert clean_reply("**Patient:** It started last week.\n\n**Doctor:** ok") == "It started last week."
    assert clean_reply("RESULTS: Hb 9.1 g/dL\nMeasurement: more") == "RESULTS: Hb 9.1 g/dL"


def test_unknown_bias_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownBiasError) as doctor_error:
        validate_bias("anchoring", "doctor")
    message = str(doctor_error.value)
    assert "anchoring" in message
    assert all(name in message for name in DOCTOR_BIASES)
    with pytest.raises(UnknownBiasError, match="self_diagnosis"):
        validate_bias("confirmation", "patient")
    with pytest.raises(UnknownBiasError, match="valid targets: doctor, patient"):
        validate_bias("recency", "nurse")
    with pytest.raises(UnknownBiasError, match="status_quo"):
        build_encounter_graph(RoleModels(*[role(lambda m: "")] * 4), doctor_bias="hindsight")


def test_bias_names_follow_agentclinic() -> None:
    assert set(BIASES["doctor"]) == DOCTOR_BIASES
    assert set(BIASES["patient"]) == (DOCTOR_BIASES - {"confirmation", "status_quo"}) | {"self_diagnosis"}
    assert validate_bias("Status-Quo", "doctor") == "status_quo"
    assert validate_bias("None", "patient") is None
    assert VARIANT.bias_text(None, "doctor") == ""


def _doctor_system(turn: int = 3, max_turns: int = 7, bias: str | None = None) -> str:
    prompt = VARIANT.doctor_prompt(
        CASE, [], turn=turn, max_turns=max_turns, bias=bias, image=None, image_request=False, with_tools=False
    )
    return prompt.messages[0].text


def test_biases_are_injected_into_the_chosen_role_prompt() -> None:
    system = _doctor_system(bias="confirmation")
    assert BIASES["doctor"]["confirmation"] in system
    assert "at most 7 questions" in system
    assert "asked 2 so far" in system
    transcript: list[Utterance] = [{"turn": 1, "role": "doctor", "text": "Hi?", "action": "question"}]
    prompt = VARIANT.patient_prompt(CASE, transcript, bias="self_diagnosis")
    assert BIASES["patient"]["self_diagnosis"] in prompt.messages[0].text
    plain = VARIANT.patient_prompt(CASE, transcript, bias=None)
    assert not any(text in plain.messages[0].text for text in BIASES["patient"].values())


def test_final_question_only_on_the_final_turn() -> None:
    def user(turn: int) -> str:
        prompt = VARIANT.doctor_prompt(
            CASE, [], turn=turn, max_turns=3, bias=None, image=None, image_request=False, with_tools=False
        )
        return prompt.messages[-1].text

    assert FINAL_QUESTION in user(3)
    assert FINAL_QUESTION not in user(2)


def test_render_info_handles_osce_and_mimic_shapes() -> None:
    text = render_info(
        {
            "Demographics": "22-year-old female",
            "History": [],
            "Symptoms": {"Secondary_Symptoms": ["Fever", "Malaise"]},
        }
    )
    assert "Demographics: 22-year-old female" in text
    assert "History: not provided" in text
    assert "Fever; Malaise" in text
