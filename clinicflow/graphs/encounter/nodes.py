"""Nodes and routers of the encounter graph; the protocol builds each role's prompt and reads its reply."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, RemoveMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.prebuilt import ToolNode

from clinicflow.agents.ehr_qa import render_reply
from clinicflow.agents.ehr_task import TASK_TOOL_TEMPLATES as TOOL_TEMPLATES
from clinicflow.agents.encounter import (
    FINAL_QUESTION,
    TEXT_ONLY_IMAGE_NOTE,
    DoctorImage,
    EncounterProtocol,
    image_block,
    message_text,
    takes_images,
)
from clinicflow.graphs.agent_step import AgentStep, call_model
from clinicflow.graphs.encounter.state import EncounterCase, State, Utterance
from clinicflow.graphs.hidden_args import hidden_args
from clinicflow.graphs.tool_round import guarded_tool_node, read_tool_round
from clinicflow.graphs.trace import TraceRecord
from clinicflow.graphs.trace import shorten as _short

__all__ = ["EncounterNodes", "RoleModels", "route_after_doctor"]


@dataclass(frozen=True)
class RoleModels:
    """One chat model per role; the same object may serve several roles."""

    doctor: BaseChatModel
    patient: BaseChatModel
    measurement: BaseChatModel
    moderator: BaseChatModel


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


def _last_doctor_line(transcript: Sequence[Utterance]) -> Utterance | None:
    return next((u for u in reversed(transcript) if u["role"] == "doctor"), None)


@dataclass(frozen=True)
class EncounterNodes:
    """The four roles as graph nodes; shared by concurrent runs (all per-run data lives in the state).

    With `image_request`, a case image goes with the doctor's prompt only on the turn after a reply
    that asked for it; otherwise on every turn.
    """

    protocol: EncounterProtocol
    models: RoleModels
    max_turns: int = 20
    doctor_bias: str | None = None
    patient_bias: str | None = None
    image_request: bool = False
    doctor_tools: Sequence[BaseTool] = ()
    max_tool_calls: int = 3
    _with_tools: AgentStep | None = field(default=None, init=False, repr=False, compare=False)
    _tool_node: ToolNode | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.doctor_tools:
            step = AgentStep(
                self.models.doctor.bind_tools(list(self.doctor_tools)),
                name="doctor",
                tool_names=[t.name for t in self.doctor_tools],
                hidden=hidden_args(self.doctor_tools),
                render=render_reply,
            )
            object.__setattr__(self, "_with_tools", step)
            node = guarded_tool_node(
                self.doctor_tools,
                name="doctor_tools",
                templates=TOOL_TEMPLATES,
                messages_key="doctor_scratch",
            )
            object.__setattr__(self, "_tool_node", node)

    async def run_doctor_tools(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        """Run the doctor's tool calls (guarded: a failure is a message to the doctor), each traced."""
        scratch = state.get("doctor_scratch") or []
        calls = [c for m in scratch[-1:] if isinstance(m, AIMessage) for c in m.tool_calls]
        assert self._tool_node is not None
        output = await self._tool_node.ainvoke(state, config)
        done = read_tool_round(output["doctor_scratch"], calls, lambda m: _short(m.text))
        return {"doctor_scratch": done.messages, "trace": done.trace}

    async def _ask(
        self, role: str, model: BaseChatModel, messages: list[BaseMessage], config: RunnableConfig
    ) -> tuple[AIMessage, TraceRecord]:
        return await call_model(model, messages, config, name=role, render=message_text)

    def _image(self, case: EncounterCase, transcript: Sequence[Utterance]) -> DoctorImage | None:
        """The case image for this doctor turn; None when the case has none or it was not asked for."""
        if case.image is None and case.image_note is None:
            return None
        if self.image_request:
            last = _last_doctor_line(transcript)
            if last is None or not last.get("wants_images"):
                return None
        if case.image is None:
            return DoctorImage(note=case.image_note)
        if not takes_images(self.models.doctor):
            return DoctorImage(note=TEXT_ONLY_IMAGE_NOTE)
        return DoctorImage(block=image_block(case.image))

    async def doctor(self, state: State, config: RunnableConfig) -> dict[str, Any]:
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
        image = self._image(case, transcript)
        prompt = self.protocol.doctor_prompt(
            case,
            transcript,
            turn=turn,
            max_turns=self.max_turns,
            bias=self.doctor_bias,
            image=image,
            image_request=self.image_request,
            with_tools=bool(self.doctor_tools),
        )
        reply, event, calls_tools = await self._doctor_reply(prompt.messages, scratch, config)
        if calls_tools:
            lines += [
                {"turn": turn, "role": "tool_call", "text": json.dumps(call["args"]), "tool": call["name"]}
                for call in reply.tool_calls
            ]
            return {"turn": turn, "doctor_scratch": [reply], "transcript": lines, "trace": [event]}

        text = self.protocol.reply_text("doctor", message_text(reply))
        action = self.protocol.doctor_action(text, prompt)
        line: Utterance = {"turn": turn, "role": "doctor", "text": text, "action": action.kind}
        if action.echo:
            line["echo"] = True
        if action.wants_images:
            line["wants_images"] = True
        if image is not None:
            line["image"] = image.status
        lines.append(line)
        update: dict[str, Any] = {"turn": turn, "transcript": lines, "last_action": action.kind}
        update["trace"] = [event]
        if scratch:
            update["doctor_scratch"] = [RemoveMessage(id=REMOVE_ALL_MESSAGES)]
        if action.kind == "diagnosis":
            update |= {"diagnosis": action.content, "finished": "diagnosis"}
        elif final:
            update["finished"] = "turn_limit"
        elif action.kind == "test":
            update["tests_requested"] = [action.content]
        return update

    async def _doctor_reply(
        self, prompt: list[BaseMessage], scratch: list[AnyMessage], config: RunnableConfig
    ) -> tuple[AIMessage, TraceRecord, bool]:
        """The doctor's reply, its trace record, and whether it calls tools (allowed for at most
        `max_tool_calls` rounds per turn; hidden arguments stripped)."""
        rounds = sum(1 for m in scratch if isinstance(m, AIMessage) and m.tool_calls)
        step = self._with_tools if rounds < self.max_tool_calls else None
        messages = [*prompt, *scratch]
        if step is None:
            reply, event = await self._ask("doctor", self.models.doctor, messages, config)
            return reply, event, False
        reply, event = await step.call(messages, config)
        if not reply.tool_calls:
            return reply, event, False
        return step.accept(reply, event), event, True

    async def patient(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        """The patient answers the doctor's last line."""
        prompt = self.protocol.patient_prompt(
            state["case"], state.get("transcript") or [], bias=self.patient_bias
        )
        reply, event = await self._ask("patient", self.models.patient, prompt.messages, config)
        answer = self.protocol.reply_text("patient", message_text(reply))
        line: Utterance = {"turn": state.get("turn", 0), "role": "patient", "text": answer}
        return {"transcript": [line], "trace": [event]}

    async def measurement(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        """The measurement reader answers the doctor's test request."""
        prompt = self.protocol.measurement_prompt(state["case"], state.get("transcript") or [])
        reply, event = await self._ask("measurement", self.models.measurement, prompt.messages, config)
        reading = self.protocol.reply_text("measurement", message_text(reply))
        line: Utterance = {"turn": state.get("turn", 0), "role": "measurement", "text": reading}
        return {"transcript": [line], "trace": [event]}

    async def moderator(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        """Judge the diagnosis against the correct one; no diagnosis counts as incorrect without a call."""
        turn = state.get("turn", 0)
        diagnosis = state.get("diagnosis")
        last = _last_doctor_line(state.get("transcript") or [])
        prompt = None
        if state.get("finished") == "diagnosis" and last is not None:
            prompt = self.protocol.moderator_prompt(
                doctor_text=last["text"], diagnosis=diagnosis or "", correct=state["case"].correct_diagnosis
            )
        if prompt is None:
            reason = "no diagnosis within the turn limit" if diagnosis is None else "empty diagnosis"
            return {
                "verdict": False,
                "moderator_reply": None,
                "diagnosis": diagnosis,
                "transcript": [{"turn": turn, "role": "moderator", "text": f"(not judged: {reason})"}],
            }
        reply, event = await self._ask("moderator", self.models.moderator, prompt.messages, config)
        verdict = self.protocol.verdict(self.protocol.reply_text("moderator", message_text(reply)))
        return {
            "verdict": verdict.correct,
            "moderator_reply": verdict.reply,
            "transcript": [{"turn": turn, "role": "moderator", "text": verdict.reply}],
            "trace": [event],
        }
