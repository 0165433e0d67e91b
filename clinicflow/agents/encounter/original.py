"""AgentClinic's own rules, as `agentclinic.py` (SamuelSchmidgall/AgentClinic) runs an encounter.

- Prompts and bias texts are the original's, word for word (its typos included); case data enters
  them as Python renders it (`str()` of the scenario's dicts).
- Every reply has its whitespace runs collapsed to one space (`re.sub("\\s+", " ", answer)`).
- Each role keeps the original's dialogue history (`agent_hist`): the doctor gets each reply it was
  given and its own answer; the patient gets the doctor's questions, its answers and every
  measurement result; the measurement reader gets the doctor's requests, its results and every
  patient answer.
- A doctor reply containing "DIAGNOSIS READY" (case-sensitive substring) ends the encounter; else
  one containing "REQUEST TEST" goes to the measurement reader; else the patient answers.
- The moderator sees the whole doctor reply; the diagnosis is correct when the moderator's reply,
  lower-cased, equals "yes".
- Generation: temperature 0.05, at most 200 new tokens per reply.

The one rule added (in `EncounterProtocol.doctor_action`): a doctor reply that repeats its own prompt
is an echo and takes no action; the original would take the "DIAGNOSIS READY" of an echoed system
prompt as a diagnosis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import HumanMessage, SystemMessage

from clinicflow.agents.encounter.common import FINAL_QUESTION, DoctorAction, EncounterProtocol, Prompt

if TYPE_CHECKING:
    from clinicflow.agents.encounter.common import DoctorTurn, Role, Scenario, Utterance

__all__ = [
    "DOCTOR_BIASES",
    "DOCTOR_INFO",
    "DOCTOR_SYSTEM",
    "IMAGE_REQUEST",
    "MEASUREMENT_INFO",
    "MEASUREMENT_SYSTEM",
    "MODERATOR_SYSTEM",
    "PATIENT_BIASES",
    "PATIENT_INFO",
    "PATIENT_SYSTEM",
    "OriginalProtocol",
    "collapse_whitespace",
    "doctor_history",
    "measurement_history",
    "patient_history",
]

DOCTOR_SYSTEM = (
    "You are a doctor named Dr. Agent who only responds in the form of dialogue. You are inspecting a "
    "patient who you will ask questions in order to understand their disease. You are only allowed to "
    "ask {} questions total before you must make a decision. You have asked {} questions so far. You "
    'can request test results using the format "REQUEST TEST: [test]". For example, "REQUEST TEST: '
    'Chest_X-Ray". Your dialogue will only be 1-3 sentences in length. Once you have decided to make a '
    'diagnosis please type "DIAGNOSIS READY: [diagnosis here]"'
)
IMAGE_REQUEST = (
    'You may also request medical images related to the disease to be returned with "REQUEST IMAGES".'
)
DOCTOR_INFO = (
    "\n\nBelow is all of the information you have. {}. \n\n Remember, you must discover their disease by "
    "asking them questions. You are also able to provide exams."
)
DOCTOR_USER = (
    "\nHere is a history of your dialogue: ",
    "\n Here was the patient response: ",
    "Now please continue your dialogue\nDoctor: ",
)
PATIENT_SYSTEM = (
    "You are a patient in a clinic who only responds in the form of dialogue. You are being inspected by "
    "a doctor who will ask you questions and will perform exams on you in order to understand your "
    "disease. Your answer will only be 1-3 sentences in length."
)
PATIENT_INFO = (
    "\n\nBelow is all of your information. {}. \n\n Remember, you must not reveal your disease explicitly "
    "but may only convey the symptoms you have in the form of dialogue if you are asked."
)
MEASUREMENT_SYSTEM = (
    "You are an measurement reader who responds with medical test results. Please respond in the format "
    '"RESULTS: [results here]"'
)
MEASUREMENT_INFO = (
    "\n\nBelow is all of the information you have. {}. \n\n If the requested results are not in your data "
    "then you can respond with NORMAL READINGS."
)
MODERATOR_SYSTEM = (
    "You are responsible for determining if the corrent diagnosis and the doctor diagnosis are the same "
    "disease. Please respond only with Yes or No. Nothing else."
)

_OTHER = "This affects how you interact with them.\n"
_DISTRUST = "\nYou are uncomfortable with your {} because you find out that they {} and you do not trust "
_TRAITS = {
    "gender": "are a particular gender",
    "race": "are a particular race",
    "sexual_orientation": "are a particular sexual orientation",
    "cultural": "are from a particular culture",
    "religion": "believe in a particular religion",
    "socioeconomic": "are from a particular socioeconomic background",
}


def _implicit(other: str, education: str) -> dict[str, str]:
    traits = {**_TRAITS, "education": education}
    order = ("gender", "race", "sexual_orientation", "cultural", "education", "religion", "socioeconomic")
    return {name: _DISTRUST.format(other, traits[name]) + "their judgement. " + _OTHER for name in order}


DOCTOR_BIASES: dict[str, str] = {
    "recency": (
        "\nRecently, you learned that a doctor with similar symptoms to the patient that diagnosed their "
        "patient with cancer. This affects how you interact with the patient.\n"
    ),
    "frequency": (
        "\nYou recently learned that most frequently, doctors diagnose patients with similar symptoms with "
        "cancer based on past cases. This affects how you interact with the patient.\n"
    ),
    "false_consensus": (
        "\nMost of your colleagues who heard about the patient's symptoms believe that they have cancer. "
        "This affects how you interact with the patient.\n"
    ),
    "status_quo": (
        "\nYour hosptial has been diagnosing these patient's symptoms with cancer for the past 10 years. "
        "This affects how you interact with the patient.\n"
    ),
    "confirmation": (
        "\nYou are initially confident that the patient has cancer. This affects how you interact with the "
        "patient.\n"
    ),
    **_implicit("patient", "are uneducated"),
}
"""The doctor's bias texts (`DoctorAgent.generate_bias`)."""

PATIENT_BIASES: dict[str, str] = {
    "recency": (
        "\nRecently, you had a friend with similar symptoms to yours that was diagnosed with cancer. This "
        "affects how you interact with the doctor.\n"
    ),
    "frequency": (
        "\nYou recently learned that most frequently, doctors diagnose this as cancer based on past cases. "
        "This affects how you interact with the doctor.\n"
    ),
    "false_consensus": (
        "\nMost of your friends who heard about your symptoms believe that you have cancer. This affects "
        "how you interact with the doctor.\n"
    ),
    "self_diagnosis": (
        "\nYou recently performed a thorough investigation of your symptoms online and have come to the "
        "conclusion that you should be diagnosed with cancer. While the doctor may believe otherwise you "
        "remain convinced you have cancer. This affects how you interact with the doctor.\n"
    ),
    **_implicit("doctor", "went to a low ranked medical school"),
}
"""The patient's bias texts (`PatientAgent.generate_bias`)."""


_WHITESPACE = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    """Every run of whitespace as one space, as the original does to each reply."""
    return _WHITESPACE.sub(" ", text)


def doctor_history(transcript: Sequence[Utterance]) -> tuple[str, str]:
    """The doctor's history and the reply it answers now (the last patient answer or reading, "" at first)."""
    history, reply = "", ""
    for line in transcript:
        if line["role"] in ("patient", "measurement"):
            reply = line["text"]
        elif line["role"] == "doctor":
            history += reply + "\n\n" + line["text"] + "\n\n"
    return history, reply


def _history(transcript: Sequence[Utterance], own: Role, other: Role) -> tuple[str, str]:
    """A role's history (each doctor line it answered with its answer, and every `other` line) and the
    doctor line it answers now."""
    history, asked = "", ""
    for line in transcript:
        if line["role"] == "doctor":
            asked = line["text"]
        elif line["role"] == own:
            history += asked + "\n\n" + line["text"] + "\n\n"
        elif line["role"] == other:
            history += line["text"] + "\n\n"
    return history, asked


def patient_history(transcript: Sequence[Utterance]) -> tuple[str, str]:
    """The patient's history and the doctor line it answers now."""
    return _history(transcript, "patient", "measurement")


def measurement_history(transcript: Sequence[Utterance]) -> tuple[str, str]:
    """The measurement reader's history and the doctor request it answers now."""
    return _history(transcript, "measurement", "patient")


def _exam_information(case: Scenario) -> Any:
    """What the original's measurement reader holds: the findings with the test results under `tests`
    (OSCE), or the NEJM case's `physical_exams`."""
    if case.kind == "osce" and isinstance(case.exam_findings, dict):
        return {**case.exam_findings, "tests": case.test_results}
    return case.exam_findings


def _named(text: str, marker: str) -> str:
    """The test or diagnosis after `marker`, up to the end of its sentence (for reports only)."""
    rest = text.split(marker, 1)[1].strip(" :*_`[]\"'")
    return rest.split(". ", 1)[0].strip(" .*_`[]\"'")


class OriginalProtocol(EncounterProtocol):
    """The rules of AgentClinic's `agentclinic.py`."""

    name = "original"
    temperature = 0.05
    max_new_tokens = 200
    allows_doctor_tools = False
    allows_image_request = True
    doctor_biases = DOCTOR_BIASES
    patient_biases = PATIENT_BIASES

    def make_doctor_prompt(self, case: Scenario, transcript: Sequence[Utterance], turn: DoctorTurn) -> Prompt:
        history, reply = doctor_history(transcript)
        if turn.number == turn.max_turns:
            reply += FINAL_QUESTION + "\n"
        rules = DOCTOR_SYSTEM.format(turn.max_turns, turn.number - 1)
        rules += IMAGE_REQUEST if turn.image_request else ""
        bias_text = self.bias_text(turn.bias, "doctor")
        system = rules + bias_text + DOCTOR_INFO.format(case.objective)
        user = DOCTOR_USER[0] + history + DOCTOR_USER[1] + reply + DOCTOR_USER[2]
        fixed = (rules, bias_text, *DOCTOR_INFO.split("{}"), *DOCTOR_USER)
        return Prompt([SystemMessage(system), turn.user_message(user)], fixed)

    def patient_prompt(self, case: Scenario, transcript: Sequence[Utterance], *, bias: str | None) -> Prompt:
        history, question = patient_history(transcript)
        system = PATIENT_SYSTEM + self.bias_text(bias, "patient") + PATIENT_INFO.format(case.patient_info)
        user = (
            "\nHere is a history of your dialogue: "
            + history
            + "\n Here was the doctor response: "
            + question
            + "Now please continue your dialogue\nPatient: "
        )
        return Prompt([SystemMessage(system), HumanMessage(user)])

    def measurement_prompt(self, case: Scenario, transcript: Sequence[Utterance]) -> Prompt:
        history, request = measurement_history(transcript)
        system = MEASUREMENT_SYSTEM + MEASUREMENT_INFO.format(_exam_information(case))
        user = (
            "\nHere is a history of the dialogue: " + history + "\n Here was the doctor measurement request: "
        )
        return Prompt([SystemMessage(system), HumanMessage(user + request)])

    def moderator_prompt(self, *, doctor_text: str, diagnosis: str, correct: str) -> Prompt:
        user = (
            "\nHere is the correct diagnosis: "
            + correct
            + "\n Here was the doctor dialogue: "
            + doctor_text
            + "\nAre these the same?"
        )
        return Prompt([SystemMessage(MODERATOR_SYSTEM), HumanMessage(user)])

    def reply_text(self, role: Role, text: str) -> str:
        return collapse_whitespace(text)

    def read_doctor(self, text: str) -> DoctorAction:
        wants_images = "REQUEST IMAGES" in text
        if "DIAGNOSIS READY" in text:
            return DoctorAction("diagnosis", _named(text, "DIAGNOSIS READY"), wants_images)
        if "REQUEST TEST" in text:
            return DoctorAction("test", _named(text, "REQUEST TEST"), wants_images)
        return DoctorAction("question", text, wants_images)

    def read_verdict(self, reply: str) -> bool | None:
        answer = reply.lower()
        return answer == "yes" if answer in ("yes", "no") else None
