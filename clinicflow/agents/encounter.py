"""AgentClinic roles for simulated patient encounters: doctor, patient, measurement and moderator.

Each role is a prompt, the slice of the case it may see, and a parser for its output. The wording
follows the AgentClinic protocol (arXiv 2405.07960): the doctor asks at most N questions, requests
tests with ``REQUEST TEST: <test>``, and ends with ``DIAGNOSIS READY: <diagnosis>``; the measurement
reader answers ``RESULTS: ...``; the moderator answers only Yes or No.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

__all__ = [
    "BIASES",
    "FINAL_QUESTION",
    "BiasTarget",
    "DoctorAction",
    "DoctorAgent",
    "MeasurementAgent",
    "ModeratorAgent",
    "PatientAgent",
    "UnknownBiasError",
    "Verdict",
    "bias_prompt",
    "clean_reply",
    "message_text",
    "parse_doctor_reply",
    "parse_moderator_reply",
    "render_info",
    "validate_bias",
]

BiasTarget = Literal["doctor", "patient"]
DialogueLine = tuple[str, str]

FINAL_QUESTION = "This is the final question. Please provide a diagnosis."
NOT_IN_RECORD = "NORMAL READINGS"

_IMPLICIT = {
    "gender": "are of a particular gender",
    "race": "are of a particular race",
    "sexual_orientation": "have a particular sexual orientation",
    "cultural": "are from a particular culture",
    "religion": "follow a particular religion",
    "socioeconomic": "are from a particular socioeconomic background",
}


def _implicit(target: BiasTarget) -> dict[str, str]:
    other = "patient" if target == "doctor" else "doctor"
    education = (
        "have little formal education" if target == "doctor" else "went to a low-ranked medical school"
    )
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
        **_implicit("doctor"),
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
        **_implicit("patient"),
    },
}
"""AgentClinic's cognitive and implicit biases by name, per role they are injected into."""


class UnknownBiasError(ValueError):
    """A bias name AgentClinic does not define for the given role; the message lists the valid ones."""

    def __init__(self, name: str, target: str) -> None:
        valid = BIASES.get(target)
        if valid is None:
            message = f"unknown bias target {target!r}; valid targets: doctor, patient"
        else:
            message = f"unknown {target} bias {name!r}; valid {target} biases: {', '.join(sorted(valid))}"
        super().__init__(message)
        self.name = name
        self.target = target


def validate_bias(name: str | None, target: str) -> str | None:
    """Return the normalised bias name (None for none), or raise UnknownBiasError."""
    if name is None or name.strip().lower() in {"", "none"}:
        if target not in BIASES:
            raise UnknownBiasError("", target)
        return None
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if target not in BIASES or key not in BIASES[target]:
        raise UnknownBiasError(name, target)
    return key


def bias_prompt(name: str | None, target: str) -> str:
    """The sentence a bias adds to the role's system prompt ("" for no bias)."""
    key = validate_bias(name, target)
    return "" if key is None else BIASES[target][key]


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


def message_text(message: BaseMessage) -> str:
    """The text content of a message (text blocks joined when content is a list)."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


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


class DoctorAction(NamedTuple):
    """What a doctor turn asks for: a question to the patient, a test, or the final diagnosis."""

    kind: Literal["question", "test", "diagnosis"]
    content: str


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


_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_moderator_reply(text: str) -> bool | None:
    """Yes -> True, No -> False, neither -> None; tolerant of case, punctuation and markdown."""
    match = _YES_NO.search(_MARKDOWN.sub(" ", text))
    if match is None:
        return None
    return match.group(1).lower() == "yes"


def _dialogue(lines: Sequence[DialogueLine]) -> str:
    return "\n".join(f"{speaker}: {text}" for speaker, text in lines) or "(nothing yet)"


TEXT_ONLY_IMAGE_NOTE = "(This case has an image, but the doctor's model is text-only and cannot see it.)"


def _takes_images(model: BaseChatModel) -> bool:
    """Whether the model says it takes images; models that do not say are assumed to (OpenAI-style)."""
    takes = getattr(model, "takes_images", None)
    return bool(takes()) if callable(takes) else True


def _image_block(path: Path) -> dict[str, Any]:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


@dataclass(frozen=True)
class DoctorAgent:
    """The doctor: sees the objective (and an image for NEJM cases) plus what patient and measurement said."""

    model: BaseChatModel
    max_turns: int = 20
    bias: str | None = None
    tools: Sequence[BaseTool] = ()
    _with_tools: Runnable[LanguageModelInput, BaseMessage] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias", validate_bias(self.bias, "doctor"))
        if self.tools:
            object.__setattr__(self, "_with_tools", self.model.bind_tools(list(self.tools)))

    def system_prompt(self, *, objective: str, asked: int, image_note: str | None = None) -> str:
        """Protocol, budget, optional bias and the doctor's view of the case."""
        parts = [
            "You are a doctor named Dr. Agent who speaks only in dialogue. You are examining a patient and "
            "ask them questions to find out what disease they have. You may ask at most "
            f"{self.max_turns} questions in total before you must decide; you have asked {asked} so far. "
            'You can request test results by writing "REQUEST TEST: [test]", for example '
            '"REQUEST TEST: Chest_X-Ray". Each reply is 1-3 sentences long. When you have decided on a '
            'diagnosis, write "DIAGNOSIS READY: [diagnosis here]".',
        ]
        if self.bias:
            parts.append(bias_prompt(self.bias, "doctor"))
        if self.tools:
            parts.append(
                "Beyond the standard AgentClinic protocol, you may call the tools you are given (guideline "
                "search, the patient's health record when one is linked) before you reply. Tool calls do "
                "not count as questions."
            )
        case = f"\nHere is all the information you have: {objective}"
        if image_note:
            case += f"\n{image_note}"
        parts.append(
            case + "\n\nRemember, you must discover the disease by asking the patient questions. "
            "You may also perform examinations."
        )
        return "\n".join(parts)

    def messages(
        self,
        *,
        objective: str,
        dialogue: Sequence[DialogueLine],
        asked: int,
        final: bool,
        image: Path | None = None,
        image_note: str | None = None,
    ) -> list[BaseMessage]:
        """The prompt for one doctor turn."""
        user = f"Here is the dialogue so far:\n{_dialogue(dialogue)}\n\n"
        if final:
            user += f"{FINAL_QUESTION}\n"
        user += "Now continue the dialogue.\nDoctor:"
        content: str | list[str | dict[str, Any]] = user
        if image is not None and _takes_images(self.model):
            content = [{"type": "text", "text": user}, _image_block(image)]
        elif image is not None:
            image_note = TEXT_ONLY_IMAGE_NOTE
        system = self.system_prompt(objective=objective, asked=asked, image_note=image_note)
        return [SystemMessage(system), HumanMessage(content=content)]

    async def respond(self, messages: Sequence[BaseMessage], *, allow_tools: bool = True) -> AIMessage:
        """One doctor reply; it may carry tool calls when tools are bound and allowed."""
        runnable: Runnable[LanguageModelInput, BaseMessage] = (
            self._with_tools if allow_tools and self._with_tools is not None else self.model
        )
        reply = await runnable.ainvoke(list(messages))
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=message_text(reply))
        if reply.tool_calls and allow_tools:
            return reply
        return AIMessage(content=clean_reply(message_text(reply)), id=reply.id)


@dataclass(frozen=True)
class PatientAgent:
    """The patient: sees only ``Patient_Actor`` and its own exchanges with the doctor."""

    model: BaseChatModel
    bias: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias", validate_bias(self.bias, "patient"))

    def system_prompt(self, patient_info: Any) -> str:
        """Role, optional bias and the patient's own information."""
        parts = [
            "You are a patient in a clinic who speaks only in dialogue. A doctor is examining you, asking "
            "questions and performing exams to understand your disease. Each answer is 1-3 sentences long."
        ]
        if self.bias:
            parts.append(bias_prompt(self.bias, "patient"))
        parts.append(
            f"\nHere is everything you know about yourself:\n{render_info(patient_info)}\n\n"
            "Never name your disease; describe only your symptoms, and only when the doctor asks."
        )
        return "\n".join(parts)

    def messages(
        self, *, patient_info: Any, dialogue: Sequence[DialogueLine], question: str
    ) -> list[BaseMessage]:
        """The prompt for one patient answer."""
        user = (
            f"Here is the dialogue so far:\n{_dialogue(dialogue)}\n\nThe doctor says: {question}\n"
            "Now continue the dialogue.\nPatient:"
        )
        return [SystemMessage(self.system_prompt(patient_info)), HumanMessage(user)]

    async def respond(self, *, patient_info: Any, dialogue: Sequence[DialogueLine], question: str) -> str:
        """The patient's answer to the doctor's latest question."""
        reply = await self.model.ainvoke(
            self.messages(patient_info=patient_info, dialogue=dialogue, question=question)
        )
        return clean_reply(message_text(reply))


@dataclass(frozen=True)
class MeasurementAgent:
    """The measurement reader: sees only the examination findings and the test results."""

    model: BaseChatModel

    def system_prompt(self, findings: Any, tests: Any) -> str:
        """Role, answer format and the measurement reader's data."""
        data = render_info({"Physical_Examination_Findings": findings, "Test_Results": tests})
        return (
            "You are a measurement reader who reports medical examination findings and test results. "
            'Answer in the form "RESULTS: [results here]".\n\n'
            f"Here is all the information you have:\n{data}\n\n"
            f'If the requested results are not in your information, answer "RESULTS: {NOT_IN_RECORD}".'
        )

    def messages(
        self, *, findings: Any, tests: Any, dialogue: Sequence[DialogueLine], request: str
    ) -> list[BaseMessage]:
        """The prompt for one measurement answer."""
        user = (
            f"Here are the earlier requests and results:\n{_dialogue(dialogue)}\n\n"
            f"The doctor's request: {request}\nMeasurement:"
        )
        return [SystemMessage(self.system_prompt(findings, tests)), HumanMessage(user)]

    async def respond(
        self, *, findings: Any, tests: Any, dialogue: Sequence[DialogueLine], request: str
    ) -> str:
        """The reading for the doctor's request, always starting with ``RESULTS:``."""
        reply = await self.model.ainvoke(
            self.messages(findings=findings, tests=tests, dialogue=dialogue, request=request)
        )
        text = clean_reply(message_text(reply))
        body = re.sub(r"^[\s*_`#]*results[\s*_`]*:[\s*_`]*", "", text, flags=re.IGNORECASE)
        return f"RESULTS: {body.strip() or NOT_IN_RECORD}"


class Verdict(NamedTuple):
    """The moderator's decision; ``parsed`` is False when the reply held neither Yes nor No."""

    correct: bool
    reply: str
    parsed: bool


@dataclass(frozen=True)
class ModeratorAgent:
    """The moderator: sees only the doctor's diagnosis and the correct one, and answers Yes or No."""

    model: BaseChatModel

    system = (
        "You decide whether the doctor's diagnosis and the correct diagnosis are the same disease. "
        "Answer only Yes or No, nothing else."
    )

    def messages(self, *, diagnosis: str, correct: str) -> list[BaseMessage]:
        """The prompt comparing the two diagnoses."""
        user = (
            f"Here is the correct diagnosis: {correct}\nHere is the doctor's diagnosis: {diagnosis}\n"
            "Are these the same disease? Answer Yes or No.\nAnswer:"
        )
        return [SystemMessage(self.system), HumanMessage(user)]

    async def judge(self, *, diagnosis: str, correct: str) -> Verdict:
        """Ask the model; an unparseable reply counts as incorrect."""
        reply = message_text(await self.model.ainvoke(self.messages(diagnosis=diagnosis, correct=correct)))
        parsed = parse_moderator_reply(reply)
        return Verdict(bool(parsed), reply.strip(), parsed is not None)
