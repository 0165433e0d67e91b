"""State of one simulated encounter: the case (input), the transcript and the outcome."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from clinicflow.agents.encounter import Role, Utterance
from clinicflow.graphs.channels import Conversation, Trace

__all__ = ["EncounterCase", "Finish", "InputState", "Role", "State", "Utterance"]

Finish = Literal["diagnosis", "turn_limit"]


@dataclass(frozen=True)
class EncounterCase:
    """One AgentClinic scenario split into the slices each role may see.

    `kind` is the scenario format (`osce`: MedQA, MIMIC-IV; `nejm`: image cases); `image` is a local
    copy of a NEJM case's image, `image_note` says why there is none.
    """

    case_id: str
    objective: str
    patient_info: Any
    exam_findings: Any
    test_results: Any
    correct_diagnosis: str
    image: Path | None = None
    image_note: str | None = None
    patient_id: str | None = None
    kind: Literal["osce", "nejm"] = "osce"


class InputState(TypedDict):
    """What a caller sends: the case, and the FHIR patient the doctor's tools may read (if any)."""

    case: EncounterCase
    patient_id: NotRequired[str | None]


class State(InputState, total=False):
    """Internal and output state; `turn` counts doctor turns taken."""

    transcript: Annotated[list[Utterance], operator.add]
    turn: int
    last_action: str
    diagnosis: str | None
    tests_requested: Annotated[list[str], operator.add]
    doctor_scratch: Conversation
    finished: Finish
    verdict: bool
    moderator_reply: str | None
    trace: Trace
