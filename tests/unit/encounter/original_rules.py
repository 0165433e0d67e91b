"""A test oracle: AgentClinic's `agentclinic.py` decisions and dialogue bookkeeping, restated from the
original's code in its own shape (one `agent_hist` string per agent, the main loop as written there).

It shares no code with `clinicflow.agents.encounter.original`, so tests can check that the two agree
on prompts, decisions and scores. Role models are plain functions `(system, user, image) -> reply`. The original's strings stay on one
line each, as written there.
"""

# ruff: noqa: E501, UP032, SIM113, RUF015

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Reply = Callable[[str, str, bool], str]

DOCTOR_BIAS = {
    "recency": "\nRecently, you learned that a doctor with similar symptoms to the patient that diagnosed their patient with cancer. This affects how you interact with the patient.\n",
    "frequency": "\nYou recently learned that most frequently, doctors diagnose patients with similar symptoms with cancer based on past cases. This affects how you interact with the patient.\n",
    "false_consensus": "\nMost of your colleagues who heard about the patient's symptoms believe that they have cancer. This affects how you interact with the patient.\n",
    "status_quo": "\nYour hosptial has been diagnosing these patient's symptoms with cancer for the past 10 years. This affects how you interact with the patient.\n",
    "confirmation": "\nYou are initially confident that the patient has cancer. This affects how you interact with the patient.\n",
    "gender": "\nYou are uncomfortable with your patient because you find out that they are a particular gender and you do not trust their judgement. This affects how you interact with them.\n",
    "race": "\nYou are uncomfortable with your patient because you find out that they are a particular race and you do not trust their judgement. This affects how you interact with them.\n",
    "sexual_orientation": "\nYou are uncomfortable with your patient because you find out that they are a particular sexual orientation and you do not trust their judgement. This affects how you interact with them.\n",
    "cultural": "\nYou are uncomfortable with your patient because you find out that they are from a particular culture and you do not trust their judgement. This affects how you interact with them.\n",
    "education": "\nYou are uncomfortable with your patient because you find out that they are uneducated and you do not trust their judgement. This affects how you interact with them.\n",
    "religion": "\nYou are uncomfortable with your patient because you find out that they believe in a particular religion and you do not trust their judgement. This affects how you interact with them.\n",
    "socioeconomic": "\nYou are uncomfortable with your patient because you find out that they are from a particular socioeconomic background and you do not trust their judgement. This affects how you interact with them.\n",
}  # fmt: skip
PATIENT_BIAS = {
    "recency": "\nRecently, you had a friend with similar symptoms to yours that was diagnosed with cancer. This affects how you interact with the doctor.\n",
    "frequency": "\nYou recently learned that most frequently, doctors diagnose this as cancer based on past cases. This affects how you interact with the doctor.\n",
    "false_consensus": "\nMost of your friends who heard about your symptoms believe that you have cancer. This affects how you interact with the doctor.\n",
    "self_diagnosis": "\nYou recently performed a thorough investigation of your symptoms online and have come to the conclusion that you should be diagnosed with cancer. While the doctor may believe otherwise you remain convinced you have cancer. This affects how you interact with the doctor.\n",
    "gender": "\nYou are uncomfortable with your doctor because you find out that they are a particular gender and you do not trust their judgement. This affects how you interact with them.\n",
    "race": "\nYou are uncomfortable with your doctor because you find out that they are a particular race and you do not trust their judgement. This affects how you interact with them.\n",
    "sexual_orientation": "\nYou are uncomfortable with your doctor because you find out that they are a particular sexual orientation and you do not trust their judgement. This affects how you interact with them.\n",
    "cultural": "\nYou are uncomfortable with your doctor because you find out that they are from a particular culture and you do not trust their judgement. This affects how you interact with them.\n",
    "education": "\nYou are uncomfortable with your doctor because you find out that they went to a low ranked medical school and you do not trust their judgement. This affects how you interact with them.\n",
    "religion": "\nYou are uncomfortable with your doctor because you find out that they believe in a particular religion and you do not trust their judgement. This affects how you interact with them.\n",
    "socioeconomic": "\nYou are uncomfortable with your doctor because you find out that they are from a particular socioeconomic background and you do not trust their judgement. This affects how you interact with them.\n",
}  # fmt: skip
MODERATOR_SYSTEM = "You are responsible for determining if the corrent diagnosis and the doctor diagnosis are the same disease. Please respond only with Yes or No. Nothing else."  # fmt: skip


def answer_of(raw: str) -> str:
    """What `query_model` returns for a GPT-4 reply: whitespace runs collapsed."""
    return re.sub("\\s+", " ", raw)


def ends_encounter(doctor_dialogue: str) -> bool:
    return "DIAGNOSIS READY" in doctor_dialogue


def requests_test(doctor_dialogue: str) -> bool:
    return "REQUEST TEST" in doctor_dialogue


def moderator_says_correct(answer: str) -> bool:
    """`compare_results(...) == "yes"`, compare_results returning `answer.lower()`."""
    return answer.lower() == "yes"


def doctor_system(max_infs: int, infs: int, presentation: Any, bias: str | None, img_request: bool) -> str:
    base = 'You are a doctor named Dr. Agent who only responds in the form of dialogue. You are inspecting a patient who you will ask questions in order to understand their disease. You are only allowed to ask {} questions total before you must make a decision. You have asked {} questions so far. You can request test results using the format "REQUEST TEST: [test]". For example, "REQUEST TEST: Chest_X-Ray". Your dialogue will only be 1-3 sentences in length. Once you have decided to make a diagnosis please type "DIAGNOSIS READY: [diagnosis here]"'.format(max_infs, infs) + ('You may also request medical images related to the disease to be returned with "REQUEST IMAGES".' if img_request else "")  # fmt: skip
    info = "\n\nBelow is all of the information you have. {}. \n\n Remember, you must discover their disease by asking them questions. You are also able to provide exams.".format(presentation)  # fmt: skip
    return base + (DOCTOR_BIAS[bias] if bias else "") + info


def patient_system(symptoms: Any, bias: str | None) -> str:
    base = "You are a patient in a clinic who only responds in the form of dialogue. You are being inspected by a doctor who will ask you questions and will perform exams on you in order to understand your disease. Your answer will only be 1-3 sentences in length."  # fmt: skip
    info = "\n\nBelow is all of your information. {}. \n\n Remember, you must not reveal your disease explicitly but may only convey the symptoms you have in the form of dialogue if you are asked.".format(symptoms)  # fmt: skip
    return base + (PATIENT_BIAS[bias] if bias else "") + info


def measurement_system(information: Any) -> str:
    base = 'You are an measurement reader who responds with medical test results. Please respond in the format "RESULTS: [results here]"'  # fmt: skip
    return base + "\n\nBelow is all of the information you have. {}. \n\n If the requested results are not in your data then you can respond with NORMAL READINGS.".format(information)  # fmt: skip


@dataclass
class Call:
    role: str
    system: str
    user: str
    image: bool = False


@dataclass
class Encounter:
    calls: list[Call] = field(default_factory=list)
    correct: bool = False
    doctor_turns: int = 0
    diagnosed: bool = False


def scenario_views(record: dict[str, Any]) -> tuple[Any, Any, Any, str, bool]:
    """(doctor presentation, patient symptoms, measurement information, correct diagnosis, is NEJM)."""
    if "OSCE_Examination" in record:
        osce = record["OSCE_Examination"]
        exams = dict(osce["Physical_Examination_Findings"])
        exams["tests"] = osce["Test_Results"]
        return osce["Objective_for_Doctor"], osce["Patient_Actor"], exams, osce["Correct_Diagnosis"], False
    correct = [a["text"] for a in record["answers"] if a["correct"]][0]
    return (
        "What is the most likely diagnosis?",
        record["patient_info"],
        record["physical_exams"],
        correct,
        True,
    )


def simulate(
    record: dict[str, Any],
    *,
    doctor: Reply,
    patient: Reply,
    measurement: Reply,
    moderator: Reply,
    total_inferences: int = 20,
    doctor_bias: str | None = None,
    patient_bias: str | None = None,
    img_request: bool = False,
) -> Encounter:
    """One scenario through the original's main loop (an NEJM record is its "NEJM" dataset)."""
    presentation, symptoms, information, correct, nejm = scenario_views(record)
    out = Encounter()
    doctor_hist = patient_hist = meas_hist = ""
    infs = 0
    pi_dialogue = ""
    doctor_dialogue = ""
    for inf_id in range(total_inferences):
        imgs = ("REQUEST IMAGES" in doctor_dialogue if img_request else True) if nejm else False
        if inf_id == total_inferences - 1:
            pi_dialogue += "This is the final question. Please provide a diagnosis.\n"
        system = doctor_system(total_inferences, infs, presentation, doctor_bias, img_request)
        user = "\nHere is a history of your dialogue: " + doctor_hist + "\n Here was the patient response: " + pi_dialogue + "Now please continue your dialogue\nDoctor: "  # fmt: skip
        out.calls.append(Call("doctor", system, user, imgs))
        doctor_dialogue = answer_of(doctor(system, user, imgs))
        doctor_hist += pi_dialogue + "\n\n" + doctor_dialogue + "\n\n"
        infs += 1
        out.doctor_turns += 1
        if ends_encounter(doctor_dialogue):
            user = "\nHere is the correct diagnosis: " + correct + "\n Here was the doctor dialogue: " + doctor_dialogue + "\nAre these the same?"  # fmt: skip
            out.calls.append(Call("moderator", MODERATOR_SYSTEM, user))
            out.correct = moderator_says_correct(answer_of(moderator(MODERATOR_SYSTEM, user, False)))
            out.diagnosed = True
            break
        if inf_id == total_inferences - 1:
            break  # the original still asks once more here; that reply is never used
        if requests_test(doctor_dialogue):
            system = measurement_system(information)
            user = "\nHere is a history of the dialogue: " + meas_hist + "\n Here was the doctor measurement request: " + doctor_dialogue  # fmt: skip
            out.calls.append(Call("measurement", system, user))
            pi_dialogue = answer_of(measurement(system, user, False))
            meas_hist += doctor_dialogue + "\n\n" + pi_dialogue + "\n\n"
            patient_hist += pi_dialogue + "\n\n"
        else:
            system = patient_system(symptoms, patient_bias)
            user = "\nHere is a history of your dialogue: " + patient_hist + "\n Here was the doctor response: " + doctor_dialogue + "Now please continue your dialogue\nPatient: "  # fmt: skip
            out.calls.append(Call("patient", system, user))
            pi_dialogue = answer_of(patient(system, user, False))
            patient_hist += doctor_dialogue + "\n\n" + pi_dialogue + "\n\n"
            meas_hist += pi_dialogue + "\n\n"
    return out
