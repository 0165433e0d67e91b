"""Output parsing and prompt contracts of the AgentClinic roles (no graph, no model)."""

from __future__ import annotations

import pytest

from clinicflow.agents.encounter import (
    BIASES,
    FINAL_QUESTION,
    DoctorAgent,
    PatientAgent,
    UnknownBiasError,
    bias_prompt,
    clean_reply,
    parse_doctor_reply,
    parse_moderator_reply,
    render_info,
    validate_bias,
)
from tests.unit.encounter.roles import role

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
    assert parse_doctor_reply(reply) == ("diagnosis", diagnosis)


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
    assert parse_doctor_reply(reply) == ("test", test)


def test_diagnosis_wins_over_a_test_request_and_plain_text_is_a_question() -> None:
    assert parse_doctor_reply("REQUEST TEST: CBC\nDIAGNOSIS READY: Anemia").kind == "diagnosis"
    assert parse_doctor_reply("How long have you had the cough?") == (
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
        ("No", False),
        ("no!", False),
        ("**No.** The diagnoses differ.", False),
        ("`NO`", False),
        ("I cannot tell", None),
        ("Not the same", None),
        ("", None),
    ],
)
def test_moderator_replies_are_parsed(reply: str, verdict: bool | None) -> None:
    assert parse_moderator_reply(reply) is verdict


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
        DoctorAgent(role(lambda m: ""), bias="hindsight")


def test_bias_names_follow_agentclinic() -> None:
    assert set(BIASES["doctor"]) == DOCTOR_BIASES
    assert set(BIASES["patient"]) == (DOCTOR_BIASES - {"confirmation", "status_quo"}) | {"self_diagnosis"}
    assert validate_bias("Status-Quo", "doctor") == "status_quo"
    assert validate_bias("None", "patient") is None
    assert bias_prompt(None, "doctor") == ""


def test_biases_are_injected_into_the_chosen_role_prompt() -> None:
    doctor = DoctorAgent(role(lambda m: ""), max_turns=7, bias="confirmation")
    system = doctor.messages(objective="Assess chest pain.", dialogue=[], asked=2, final=False)[0].text
    assert BIASES["doctor"]["confirmation"] in system
    assert "at most 7 questions" in system
    assert "asked 2 so far" in system
    patient = PatientAgent(role(lambda m: ""), bias="self_diagnosis")
    prompt = patient.messages(patient_info={"Demographics": "50-year-old male"}, dialogue=[], question="Hi?")
    assert BIASES["patient"]["self_diagnosis"] in prompt[0].text
    unbiased = PatientAgent(role(lambda m: ""))
    plain = unbiased.messages(patient_info={"Demographics": "50-year-old male"}, dialogue=[], question="Hi?")
    assert not any(text in plain[0].text for text in BIASES["patient"].values())


def test_final_question_only_on_the_final_turn() -> None:
    doctor = DoctorAgent(role(lambda m: ""), max_turns=3)
    last = doctor.messages(objective="x", dialogue=[], asked=2, final=True)
    earlier = doctor.messages(objective="x", dialogue=[], asked=1, final=False)
    assert FINAL_QUESTION in last[-1].text
    assert FINAL_QUESTION not in earlier[-1].text


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
