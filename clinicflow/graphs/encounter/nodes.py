"""Nodes and routers of the encounter graph; each node hands its agent only that role's view."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, RemoveMessage, ToolMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from clinicflow.agents.encounter import (
    FINAL_QUESTION,
    DoctorAgent,
    MeasurementAgent,
    ModeratorAgent,
    PatientAgent,
    message_text,
    parse_doctor_reply,
)
from clinicflow.graphs.encounter.state import State, Utterance

__all__ = [
    "EncounterNodes",
    "doctor_view",
    "measurement_view",
    "patient_view",
    "route_after_doctor",
]

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


def route_after_doctor(state: State) -> Literal["doctor_tools", "moderator", "measurement", "patient"]:
    """Tool calls go to the tools, a diagnosis or the turn limit ends, a test goes to measurement."""
    scratch = state.get("doctor_scratch") or []
    if scratch and isinstance(scratch[-1], AIMessage) and scratch[-1].tool_calls:
        return "doctor_tools"
    if state.get("finished"):
        return "moderator"
    return "measurement" if state.get("last_action") == "test" else "patient"


def _new_tool_results(scratch: Sequence[AnyMessage]) -> list[ToolMessage]:
    results: list[ToolMessage] = []
    for message in reversed(scratch):
        if isinstance(message, AIMessage):
            break
        if isinstance(message, ToolMessage):
            results.append(message)
    return results[::-1]


@dataclass(frozen=True)
class EncounterNodes:
    """The four roles as graph nodes; shared by concurrent runs (all per-run data lives in the state)."""

    doctor_agent: DoctorAgent
    patient_agent: PatientAgent
    measurement_agent: MeasurementAgent
    moderator_agent: ModeratorAgent
    max_turns: int = 20
    max_tool_calls: int = 3

    async def doctor(self, state: State) -> dict[str, Any]:
        """One doctor turn (or its continuation after tool results)."""
        case = state["case"]
        transcript = state.get("transcript") or []
        scratch = list(state.get("doctor_scratch") or [])
        turn = state.get("turn", 0) + (0 if scratch else 1)
        final = turn >= self.max_turns
        lines: list[Utterance] = [
            {"turn": turn, "role": "tool", "text": message_text(m), "tool": m.name or ""}
            for m in _new_tool_results(scratch)
        ]
        if final and not scratch:
            lines.append({"turn": turn, "role": "system", "text": FINAL_QUESTION})
        messages = self.doctor_agent.messages(
            objective=case.objective,
            dialogue=doctor_view(transcript, turn),
            asked=turn - 1,
            final=final,
            image=case.image,
            image_note=case.image_note,
        )
        rounds = sum(1 for m in scratch if isinstance(m, AIMessage) and m.tool_calls)
        reply = await self.doctor_agent.respond(
            [*messages, *scratch], allow_tools=rounds < self.max_tool_calls
        )
        if reply.tool_calls:
            lines += [
                {"turn": turn, "role": "tool_call", "text": json.dumps(call["args"]), "tool": call["name"]}
                for call in reply.tool_calls
            ]
            return {"turn": turn, "doctor_scratch": [reply], "transcript": lines}
        text = message_text(reply)
        action = parse_doctor_reply(text)
        lines.append({"turn": turn, "role": "doctor", "text": text, "action": action.kind})
        update: dict[str, Any] = {"turn": turn, "transcript": lines, "last_action": action.kind}
        if scratch:
            update["doctor_scratch"] = [RemoveMessage(id=REMOVE_ALL_MESSAGES)]
        if action.kind == "diagnosis":
            update |= {"diagnosis": action.content, "finished": "diagnosis"}
        elif final:
            update["finished"] = "turn_limit"
        elif action.kind == "test":
            update["tests_requested"] = [action.content]
        return update

    async def patient(self, state: State) -> dict[str, Any]:
        """The patient answers the doctor's last question from `Patient_Actor` alone."""
        view = patient_view(state.get("transcript") or [])
        answer = await self.patient_agent.respond(
            patient_info=state["case"].patient_info, dialogue=view[:-1], question=view[-1][1]
        )
        return {"transcript": [{"turn": state.get("turn", 0), "role": "patient", "text": answer}]}

    async def measurement(self, state: State) -> dict[str, Any]:
        """The measurement reader answers the doctor's test request from findings and results alone."""
        case = state["case"]
        view = measurement_view(state.get("transcript") or [])
        reading = await self.measurement_agent.respond(
            findings=case.exam_findings, tests=case.test_results, dialogue=view[:-1], request=view[-1][1]
        )
        return {"transcript": [{"turn": state.get("turn", 0), "role": "measurement", "text": reading}]}

    async def moderator(self, state: State) -> dict[str, Any]:
        """Judge the diagnosis against the correct one; no diagnosis counts as incorrect without a call."""
        turn = state.get("turn", 0)
        diagnosis = state.get("diagnosis")
        if not diagnosis:
            reason = "no diagnosis within the turn limit" if diagnosis is None else "empty diagnosis"
            return {
                "verdict": False,
                "moderator_reply": None,
                "diagnosis": diagnosis,
                "transcript": [{"turn": turn, "role": "moderator", "text": f"(not judged: {reason})"}],
            }
        verdict = await self.moderator_agent.judge(
            diagnosis=diagnosis, correct=state["case"].correct_diagnosis
        )
        return {
            "verdict": verdict.correct,
            "moderator_reply": verdict.reply,
            "transcript": [{"turn": turn, "role": "moderator", "text": verdict.reply}],
        }
