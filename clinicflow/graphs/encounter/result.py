"""What an encounter run reports: the diagnosis, the verdict and the transcript."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clinicflow.graphs.encounter.state import Finish, Utterance

__all__ = ["EncounterOutcome", "encounter_outcome"]


@dataclass(frozen=True)
class EncounterOutcome:
    """The result of one encounter, ready to be written as a results line and a transcript."""

    case_id: str
    correct_diagnosis: str
    diagnosis: str | None
    correct: bool
    moderator_reply: str | None
    turns: int
    tests_requested: list[str]
    finished: Finish
    transcript: list[Utterance] = field(default_factory=list)

    @property
    def echo_turns(self) -> int:
        """Doctor replies taken as no action because they repeated their own prompt."""
        return sum(1 for u in self.transcript if u["role"] == "doctor" and u.get("echo"))

    @property
    def image_turns(self) -> int:
        """Doctor turns whose prompt carried the case image."""
        return sum(1 for u in self.transcript if u["role"] == "doctor" and u.get("image") == "sent")

    @property
    def image_not_sent(self) -> str | None:
        """Why the case image did not go with a doctor prompt (the first reason given), if it did not."""
        reasons = [
            u["image"] for u in self.transcript if u["role"] == "doctor" and u.get("image", "sent") != "sent"
        ]
        return reasons[0].removeprefix("not sent: ") if reasons else None


def encounter_outcome(thread_id: str, state: Mapping[str, Any], pending: Any = None) -> EncounterOutcome:
    """The outcome of a finished encounter's state."""
    case = state["case"]
    return EncounterOutcome(
        case_id=case.case_id,
        correct_diagnosis=case.correct_diagnosis,
        diagnosis=state.get("diagnosis"),
        correct=bool(state.get("verdict")),
        moderator_reply=state.get("moderator_reply"),
        turns=state.get("turn", 0),
        tests_requested=list(state.get("tests_requested") or []),
        finished=state.get("finished", "turn_limit"),
        transcript=list(state.get("transcript") or []),
    )
