"""What the AgentClinic protocols share: the transcript, a role's prompt, doctor actions, verdicts, bias
names, the echo guard and the protocol interface each rule set implements (the package re-exports them)."""

from __future__ import annotations

import base64
import mimetypes
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, NotRequired, Protocol, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage

Role = Literal["doctor", "patient", "measurement", "moderator", "system", "tool_call", "tool"]
BiasTarget = Literal["doctor", "patient"]

FINAL_QUESTION = "This is the final question. Please provide a diagnosis."
"""What the doctor is told on its last turn (AgentClinic's wording)."""

DOCTOR_BIAS_NAMES = (
    "recency", "frequency", "false_consensus", "confirmation", "status_quo", "gender", "race",
    "sexual_orientation", "cultural", "education", "religion", "socioeconomic",
)  # fmt: skip
PATIENT_BIAS_NAMES = (
    "recency", "frequency", "false_consensus", "self_diagnosis", "gender", "race", "sexual_orientation",
    "cultural", "education", "religion", "socioeconomic",
)  # fmt: skip
_BIAS_NAMES: dict[str, tuple[str, ...]] = {"doctor": DOCTOR_BIAS_NAMES, "patient": PATIENT_BIAS_NAMES}


class Utterance(TypedDict):
    """One transcript line. Doctor lines carry the action taken (`echo` when the reply repeated its
    prompt and so was taken as no action, `wants_images` when it asked for images, `image` whether
    the case's image went with the prompt); tool lines carry the tool name."""

    turn: int
    role: Role
    text: str
    action: NotRequired[str]
    echo: NotRequired[bool]
    wants_images: NotRequired[bool]
    image: NotRequired[str]
    tool: NotRequired[str]


class Scenario(Protocol):
    """The case as the role prompts read it (`kind` is `osce` or `nejm`)."""

    @property
    def kind(self) -> str: ...
    @property
    def objective(self) -> str: ...
    @property
    def patient_info(self) -> Any: ...
    @property
    def exam_findings(self) -> Any: ...
    @property
    def test_results(self) -> Any: ...
    @property
    def correct_diagnosis(self) -> str: ...


@dataclass(frozen=True)
class Prompt:
    """The messages for one model call, and the prompt's own fixed wording (no case data, no dialogue):
    what a reply that merely echoes its prompt would repeat."""

    messages: list[BaseMessage]
    fixed: tuple[str, ...] = ()


@dataclass(frozen=True)
class DoctorImage:
    """The case image for one doctor turn: the content block sent, or why none was (`note`)."""

    block: dict[str, Any] | None = None
    note: str | None = None

    @property
    def status(self) -> str:
        return "sent" if self.block is not None else f"not sent: {self.note}"


@dataclass(frozen=True)
class DoctorTurn:
    """What a doctor prompt is built for besides the case and the transcript: turn `number` (1-based)
    of `max_turns`, the bias, the case image, and whether image requests and tools are offered."""

    number: int
    max_turns: int
    bias: str | None
    image: DoctorImage | None
    image_request: bool
    with_tools: bool

    def user_message(self, text: str) -> HumanMessage:
        """The doctor's user message: `text`, with the case image when one is sent this turn."""
        if self.image is None or self.image.block is None:
            return HumanMessage(content=text)
        return HumanMessage(content=[{"type": "text", "text": text}, self.image.block])


class DoctorAction(NamedTuple):
    """What a doctor reply does: ask the patient, request a test, or give the diagnosis.

    `content` is the test or diagnosis named (for reports); `echo` marks a reply that repeated its own
    prompt and so is taken as no action at all.
    """

    kind: Literal["question", "test", "diagnosis"]
    content: str
    wants_images: bool = False
    echo: bool = False


class Verdict(NamedTuple):
    """The moderator's decision on its reply; `parsed` is False when the reply was neither Yes nor No."""

    correct: bool
    reply: str
    parsed: bool


class UnknownBiasError(ValueError):
    """A bias name AgentClinic does not define for the given role; the message lists the valid ones."""

    def __init__(self, name: str, target: str) -> None:
        valid = _BIAS_NAMES.get(target)
        if valid is None:
            message = f"unknown bias target {target!r}; valid targets: doctor, patient"
        else:
            message = f"unknown {target} bias {name!r}; valid {target} biases: {', '.join(sorted(valid))}"
        super().__init__(message)
        self.name = name
        self.target = target


class ProtocolOptionError(ValueError):
    """An unknown protocol, or an option the chosen protocol does not have."""


def validate_bias(name: str | None, target: str) -> str | None:
    """The normalised bias name (None for none, also for "None"), or UnknownBiasError."""
    if target not in _BIAS_NAMES:
        raise UnknownBiasError(name or "", target)
    if name is None or name.strip().lower() in {"", "none"}:
        return None
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in _BIAS_NAMES[target]:
        raise UnknownBiasError(name, target)
    return key


def message_text(message: BaseMessage) -> str:
    """The text content of a message (text blocks joined when content is a list)."""
    return str(message.text)


ECHO_SPAN = 8
"""Consecutive words of its prompt's fixed wording that make a reply an echo (a shorter fixed phrase
counts when repeated whole)."""

_WORD = re.compile(r"\w+")


def repeats_prompt(reply: str, fixed: Iterable[str], *, span: int = ECHO_SPAN) -> bool:
    """Whether `reply` repeats `span` consecutive words of one of the `fixed` texts (case and
    punctuation ignored); a fixed text shorter than `span` words counts only when repeated whole."""
    grams: set[tuple[str, ...]] = set()
    for text in fixed:
        words = _WORD.findall(text.lower())
        size = min(span, len(words))
        grams.update(tuple(words[i : i + size]) for i in range(len(words) - size + 1) if size)
    if not grams:
        return False
    words = _WORD.findall(reply.lower())
    sizes = {len(g) for g in grams}
    return any(tuple(words[i : i + n]) in grams for n in sizes for i in range(len(words) - n + 1))


def takes_images(model: BaseChatModel) -> bool:
    """Whether the model says it takes images; models that do not say are assumed to (OpenAI-style)."""
    says = getattr(model, "takes_images", None)
    return bool(says()) if callable(says) else True


def image_block(path: Path) -> dict[str, Any]:
    """An OpenAI-style `image_url` content part holding the file as a data URL."""
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def sets_generation(model: BaseChatModel) -> bool:
    """Whether `with_generation` can set the model's temperature."""
    return "temperature" in type(model).model_fields


def with_generation(model: BaseChatModel, temperature: float, max_new_tokens: int) -> BaseChatModel:
    """A copy of `model` with the given temperature and reply-length limit, for the settings it has
    (the model layer's backends have both; a model without them is returned unchanged)."""
    fields = type(model).model_fields
    update: dict[str, Any] = {}
    if "temperature" in fields:
        update["temperature"] = temperature
    if "max_new_tokens" in fields:
        update["max_new_tokens"] = max_new_tokens
    return model.model_copy(update=update) if update else model


class EncounterProtocol(ABC):
    """One rule set for an AgentClinic encounter: the role prompts built from the transcript, how a
    reply is read, and the generation settings. The graph runs any protocol the same way."""

    name: ClassVar[str]
    temperature: ClassVar[float]
    max_new_tokens: ClassVar[int]
    allows_doctor_tools: ClassVar[bool]
    allows_image_request: ClassVar[bool]
    doctor_biases: ClassVar[Mapping[str, str]]
    patient_biases: ClassVar[Mapping[str, str]]

    def doctor_prompt(
        self,
        case: Scenario,
        transcript: Sequence[Utterance],
        *,
        turn: int,
        max_turns: int,
        bias: str | None,
        image: DoctorImage | None,
        image_request: bool,
        with_tools: bool,
    ) -> Prompt:
        """The prompt for doctor turn `turn` (1-based); the final question is added on the last one."""
        doctor = DoctorTurn(turn, max_turns, bias, image, image_request, with_tools)
        return self.make_doctor_prompt(case, transcript, doctor)

    @abstractmethod
    def make_doctor_prompt(self, case: Scenario, transcript: Sequence[Utterance], turn: DoctorTurn) -> Prompt:
        """The prompt for one doctor turn (`doctor_prompt` with its settings gathered)."""

    @abstractmethod
    def patient_prompt(self, case: Scenario, transcript: Sequence[Utterance], *, bias: str | None) -> Prompt:
        """The prompt for the patient's answer to the last doctor line."""

    @abstractmethod
    def measurement_prompt(self, case: Scenario, transcript: Sequence[Utterance]) -> Prompt:
        """The prompt for the reading the last doctor line asked for."""

    @abstractmethod
    def moderator_prompt(self, *, doctor_text: str, diagnosis: str, correct: str) -> Prompt | None:
        """The prompt comparing the doctor's diagnosis with the correct one; None: judged incorrect
        without asking."""

    @abstractmethod
    def reply_text(self, role: Role, text: str) -> str:
        """A role's reply as the protocol records and passes it on."""

    @abstractmethod
    def read_doctor(self, text: str) -> DoctorAction:
        """The action in a doctor reply (before the echo guard)."""

    @abstractmethod
    def read_verdict(self, reply: str) -> bool | None:
        """The moderator's Yes (True) or No (False) in its reply; None when it is neither."""

    def verdict(self, reply: str) -> Verdict:
        """The moderator's verdict in its reply (an unreadable reply is incorrect)."""
        said = self.read_verdict(reply)
        return Verdict(bool(said), reply, said is not None)

    def check_options(self, *, doctor_tools: bool = False, image_request: bool = False) -> None:
        """ProtocolOptionError for an option this protocol does not have."""
        if doctor_tools and not self.allows_doctor_tools:
            raise ProtocolOptionError(
                f"doctor tools are a variant beyond AgentClinic, not part of protocol {self.name!r} "
                "(use protocol clinicflow)"
            )
        if image_request and not self.allows_image_request:
            raise ProtocolOptionError(
                f"image requests are AgentClinic's option, not part of protocol {self.name!r} "
                "(use protocol original)"
            )

    def doctor_action(self, text: str, prompt: Prompt) -> DoctorAction:
        """The action in a doctor reply; a reply that repeats its own prompt is an echo, never an action."""
        if repeats_prompt(text, prompt.fixed):
            return DoctorAction("question", text, echo=True)
        return self.read_doctor(text)

    def bias_text(self, name: str | None, target: BiasTarget) -> str:
        """The text a bias adds to the role's system prompt ("" for none)."""
        key = validate_bias(name, target)
        texts = self.doctor_biases if target == "doctor" else self.patient_biases
        return "" if key is None else texts[key]
