"""The `clinicflow` protocol: the project's own AgentClinic variant, tolerant of small models' output.

Where it differs from the original (`original.py`), rule by rule (docs/CONTRACTS.md has the table):

- prompts are reworded (no typos), case data is rendered as indented lines, and the dialogue is shown
  as labelled lines;
- each role sees only its own exchanges: the patient never sees test requests or results, the
  measurement reader never sees the patient's answers;
- a reply loses a leading speaker label and is cut where the model starts writing another speaker's
  turn; a measurement reading always starts with ``RESULTS:``;
- actions are found case-insensitively with markdown stripped (``**Diagnosis ready:**`` counts);
- the moderator sees only the diagnosis (the first line after DIAGNOSIS READY); an empty one is
  incorrect without asking; its reply counts when it starts with Yes or No (any case, markdown,
  an ``Answer:`` label);
- generation is greedy (temperature 0) with up to 256 new tokens;
- the doctor may call tools (guideline search, the linked record) when the graph is given them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import HumanMessage, SystemMessage

from clinicflow.agents.encounter.common import FINAL_QUESTION, DoctorAction, EncounterProtocol, Prompt

if TYPE_CHECKING:
    from clinicflow.agents.encounter.common import DoctorTurn, Role, Scenario, Utterance

__all__ = [
    "BIASES",
    "NOT_IN_RECORD",
    "TEXT_ONLY_IMAGE_NOTE",
    "ClinicflowProtocol",
    "clean_reply",
    "doctor_view",
    "measurement_view",
    "parse_doctor_reply",
    "parse_moderator_reply",
    "patient_view",
    "render_info",
]

NOT_IN_RECORD = "NORMAL READINGS"
TEXT_ONLY_IMAGE_NOTE = "(This case has an image, but the doctor's model is text-only and cannot see it.)"

_IMPLICIT = {
    "gender": "are of a particular gender",
    "race": "are of a particular race",
    "sexual_orientation": "have a particular sexual orientation",
    "cultural": "are from a particular culture",
    "religion": "follow a particular religion",
    "socioeconomic": "are from a particular socioeconomic background",
}


def _implicit(other: str, education: str) -> dict[str, str]:
    return {
        name: (
            f"You are uncomfortable with your {other} because you found out that they {trait}, and you "
            f"do not trust their judgement. This affects how you interact with them."
        )
        for name, trait in {**_IMPLICIT, "education": education}.items()
    }


BIASES: dict[str, dict[str, str]] = {
    "doctor": {
        "recency": (
            "Recently, you learned of a colleague whose patient had symptoms like this patient's and was "
            "diagnosed with cancer. This affects how you interact with the patient."
        ),
        "frequency": (
            "You recently learned that, in past cases, doctors most often diagnose patients with symptoms "
            "like these with cancer. This affects how you interact with the patient."
        ),
        "false_consensus": (
            "Most of your colleagues who heard about this patient's symptoms believe the patient has "
            "cancer. This affects how you interact with the patient."
        ),
        "confirmation": (
            "From the start you are confident that the patient has cancer. This affects how you interact "
            "with the patient."
        ),
        "status_quo": (
            "For the past 10 years your hospital has diagnosed symptoms like these as cancer. This affects "
            "how you interact with the patient."
        ),
        **_implicit("patient", "have little formal education"),
    },
    "patient": {
        "recency": (
            "Recently, a friend of yours with symptoms like yours was diagnosed with cancer. This affects "
            "how you interact with the doctor."
        ),
        "frequency": (
            "You recently read that doctors most often diagnose symptoms like yours as cancer. This affects "
            "how you interact with the doctor."
        ),
        "false_consensus": (
            "Most of your friends who heard about your symptoms believe that you have cancer. This affects "
            "how you interact with the doctor."
        ),
        "self_diagnosis": (
            "You researched your symptoms online and concluded that you have cancer. Even if the doctor "
            "thinks otherwise, you remain convinced. This affects how you interact with the doctor."
        ),
        **_implicit("doctor", "went to a low-ranked medical school"),
    },
}
"""The variant's bias texts (reworded from the original's), per role they are injected into."""


def render_info(value: Any, indent: int = 0) -> str:
    """Render a scenario section (nested dicts, lists, strings) as readable indented lines."""
    pad = "  " * indent
    if isinstance(value, Mapping):
        lines = []
        for key, item in value.items():
            label = str(key).replace("_", " ")
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{label}:")
                lines.append(render_info(item, indent + 1))
            else:
                lines.append(f"{pad}{label}: {_scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if all(not isinstance(item, Mapping | list) for item in value):
            return f"{pad}{'; '.join(_scalar(item) for item in value)}"
        return "\n".join(f"{pad}- {render_info(item, indent + 1).strip()}" for item in value)
    return f"{pad}{_scalar(value)}"


def _scalar(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "not provided"
    return str(value).strip()


_SPEAKERS = r"(?:Doctor|Dr\.? Agent|Patient|Measurement|Moderator)"
_LABEL = r"\s*(?:\*\*)?\s*" + _SPEAKERS + r"\s*(?:\*\*)?\s*:(?:\s*\*\*)?"
_LEADING_LABEL = re.compile("^" + _LABEL + r"\s*", re.IGNORECASE)
_NEXT_SPEAKER = re.compile(r"\n" + _LABEL, re.IGNORECASE)


def clean_reply(text: str) -> str:
    """Strip a leading speaker label and cut the reply where the model starts writing another turn."""
    text = _LEADING_LABEL.sub("", text.strip(), count=1)
    match = _NEXT_SPEAKER.search(text)
    if match:
        text = text[: match.start()]
    return text.strip()


_MARKDOWN = re.compile(r"[*`#>]+|(?<!\w)_+|_+(?!\w)")
_DIAGNOSIS = re.compile(r"diagnosis\s*ready\s*[:\-–—.]*\s*(.*)", re.IGNORECASE | re.DOTALL)
_TEST = re.compile(r"request\s*test\s*[:\-–—.]*\s*(.*)", re.IGNORECASE | re.DOTALL)
_EDGE = " \t\r\n\"'“”‘’[](){}<>.,;:!?"


def _first_line(rest: str) -> str:
    for line in rest.splitlines():
        line = line.strip(_EDGE)
        if line:
            return line
    return ""


def parse_doctor_reply(text: str) -> DoctorAction:
    """Classify a doctor reply; tolerant of case, punctuation and markdown (``**DIAGNOSIS READY:**``)."""
    plain = _MARKDOWN.sub("", text)
    diagnosis = _DIAGNOSIS.search(plain)
    if diagnosis:
        return DoctorAction("diagnosis", _first_line(diagnosis.group(1)))
    test = _TEST.search(plain)
    if test:
        name = _first_line(test.group(1))
        name = re.split(r"(?<=[a-z0-9)])[.;!?](?:\s|$)", name, maxsplit=1, flags=re.IGNORECASE)[0]
        return DoctorAction("test", name.strip(_EDGE))
    return DoctorAction("question", text.strip())


_LEADING_VERDICT = re.compile(r"^\W*(?:(?:answer|moderator)\W*:\W*)?(yes|no)\b", re.IGNORECASE)


def parse_moderator_reply(text: str) -> bool | None:
    """Yes -> True, No -> False when the reply starts with it (any case, markdown, an ``Answer:``
    label); anything else -> None. A Yes later in the reply (an echoed "Answer only Yes or No") never
    counts."""
    match = _LEADING_VERDICT.match(_MARKDOWN.sub(" ", text))
    if match is None:
        return None
    return match.group(1).lower() == "yes"


_LABELS = {"doctor": "Doctor", "patient": "Patient", "measurement": "Measurement", "tool": "Tool result"}


def doctor_view(transcript: Sequence[Utterance], turn: int) -> list[tuple[str, str]]:
    """The dialogue the doctor sees before turn `turn`: everything said to it, and earlier tool results."""
    return [
        (_LABELS[u["role"]], u["text"])
        for u in transcript
        if u["role"] in {"doctor", "patient", "measurement"} or (u["role"] == "tool" and u["turn"] < turn)
    ]


def patient_view(transcript: Sequence[Utterance]) -> list[tuple[str, str]]:
    """Only the doctor's questions to the patient and the patient's answers."""
    return [
        (_LABELS[u["role"]], u["text"])
        for u in transcript
        if u["role"] == "patient" or (u["role"] == "doctor" and u.get("action") == "question")
    ]


def measurement_view(transcript: Sequence[Utterance]) -> list[tuple[str, str]]:
    """Only the doctor's test requests and the readings given for them."""
    return [
        (_LABELS[u["role"]], u["text"])
        for u in transcript
        if u["role"] == "measurement" or (u["role"] == "doctor" and u.get("action") == "test")
    ]


def _dialogue(lines: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{speaker}: {text}" for speaker, text in lines) or "(nothing yet)"


_DOCTOR_USER = ("Here is the dialogue so far:", "Now continue the dialogue.")
_TOOLS_NOTE = (
    "Beyond the standard AgentClinic protocol, you may call the tools you are given (guideline search, "
    "the patient's health record when one is linked) before you reply. Tool calls do not count as "
    "questions."
)
_REMEMBER = (
    "Remember, you must discover the disease by asking the patient questions. You may also perform "
    "examinations."
)
MODERATOR_SYSTEM = (
    "You decide whether the doctor's diagnosis and the correct diagnosis are the same disease. "
    "Answer only Yes or No, nothing else."
)


def _doctor_rules(max_turns: int, asked: int) -> str:
    return (
        "You are a doctor named Dr. Agent who speaks only in dialogue. You are examining a patient and "
        "ask them questions to find out what disease they have. You may ask at most "
        f"{max_turns} questions in total before you must decide; you have asked {asked} so far. "
        'You can request test results by writing "REQUEST TEST: [test]", for example '
        '"REQUEST TEST: Chest_X-Ray". Each reply is 1-3 sentences long. When you have decided on a '
        'diagnosis, write "DIAGNOSIS READY: [diagnosis here]".'
    )


class ClinicflowProtocol(EncounterProtocol):
    """The project's tolerant variant (see the module docstring for each rule)."""

    name = "clinicflow"
    temperature = 0.0
    max_new_tokens = 256
    allows_doctor_tools = True
    allows_image_request = False
    doctor_biases = BIASES["doctor"]
    patient_biases = BIASES["patient"]

    def make_doctor_prompt(self, case: Scenario, transcript: Sequence[Utterance], turn: DoctorTurn) -> Prompt:
        rules = _doctor_rules(turn.max_turns, turn.number - 1)
        parts = [rules, self.bias_text(turn.bias, "doctor"), _TOOLS_NOTE if turn.with_tools else ""]
        info = f"\nHere is all the information you have: {str(case.objective).strip()}"
        if turn.image is not None and turn.image.block is None:
            info += f"\n{turn.image.note}"
        system = "\n".join(p for p in parts if p) + "\n" + info + f"\n\n{_REMEMBER}"
        user = f"{_DOCTOR_USER[0]}\n{_dialogue(doctor_view(transcript, turn.number))}\n\n"
        if turn.number >= turn.max_turns:
            user += f"{FINAL_QUESTION}\n"
        user += f"{_DOCTOR_USER[1]}\nDoctor:"
        fixed = (*parts, "Here is all the information you have:", _REMEMBER, *_DOCTOR_USER)
        return Prompt([SystemMessage(system), turn.user_message(user)], fixed)

    def patient_prompt(self, case: Scenario, transcript: Sequence[Utterance], *, bias: str | None) -> Prompt:
        view = patient_view(transcript)
        parts = [
            "You are a patient in a clinic who speaks only in dialogue. A doctor is examining you, asking "
            "questions and performing exams to understand your disease. Each answer is 1-3 sentences long."
        ]
        if bias:
            parts.append(self.bias_text(bias, "patient"))
        parts.append(
            f"\nHere is everything you know about yourself:\n{render_info(case.patient_info)}\n\n"
            "Never name your disease; describe only your symptoms, and only when the doctor asks."
        )
        user = (
            f"Here is the dialogue so far:\n{_dialogue(view[:-1])}\n\nThe doctor says: {view[-1][1]}\n"
            "Now continue the dialogue.\nPatient:"
        )
        return Prompt([SystemMessage("\n".join(parts)), HumanMessage(user)])

    def measurement_prompt(self, case: Scenario, transcript: Sequence[Utterance]) -> Prompt:
        view = measurement_view(transcript)
        data = render_info(
            {"Physical_Examination_Findings": case.exam_findings, "Test_Results": case.test_results}
        )
        system = (
            "You are a measurement reader who reports medical examination findings and test results. "
            'Answer in the form "RESULTS: [results here]".\n\n'
            f"Here is all the information you have:\n{data}\n\n"
            f'If the requested results are not in your information, answer "RESULTS: {NOT_IN_RECORD}".'
        )
        user = (
            f"Here are the earlier requests and results:\n{_dialogue(view[:-1])}\n\n"
            f"The doctor's request: {view[-1][1]}\nMeasurement:"
        )
        return Prompt([SystemMessage(system), HumanMessage(user)])

    def moderator_prompt(self, *, doctor_text: str, diagnosis: str, correct: str) -> Prompt | None:
        if not diagnosis:
            return None
        user = (
            f"Here is the correct diagnosis: {correct.strip()}\nHere is the doctor's diagnosis: {diagnosis}\n"
            "Are these the same disease? Answer Yes or No.\nAnswer:"
        )
        return Prompt([SystemMessage(MODERATOR_SYSTEM), HumanMessage(user)])

    def reply_text(self, role: Role, text: str) -> str:
        if role == "moderator":
            return text.strip()
        cleaned = clean_reply(text)
        if role != "measurement":
            return cleaned
        body = re.sub(r"^[\s*_`#]*results[\s*_`]*:[\s*_`]*", "", cleaned, flags=re.IGNORECASE)
        return f"RESULTS: {body.strip() or NOT_IN_RECORD}"

    def read_doctor(self, text: str) -> DoctorAction:
        return parse_doctor_reply(text)

    def read_verdict(self, reply: str) -> bool | None:
        return parse_moderator_reply(reply)
