"""Role fakes for encounter tests: scripted chat models whose replies are functions of the prompt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from clinicflow.graphs.encounter import RoleModels
from tests.fakes import ScriptedChatModel

__all__ = ["FakeRoles", "SlowScriptedChatModel", "prompt_text", "role", "role_models", "system_text"]


def prompt_text(messages: list[BaseMessage]) -> str:
    """All the text a model was shown."""
    return "\n".join(m.text for m in messages)


def system_text(messages: list[BaseMessage]) -> str:
    """The system prompt a model was shown."""
    return messages[0].text


def role(reply: Callable[[list[BaseMessage]], str | AIMessage], calls: int = 2000) -> ScriptedChatModel:
    """A fake whose every reply is computed from the prompt (a string becomes a plain AIMessage)."""

    def item(messages: list[BaseMessage]) -> AIMessage:
        out = reply(messages)
        return out if isinstance(out, AIMessage) else AIMessage(content=out)

    return ScriptedChatModel(script=[item] * calls)


@dataclass(frozen=True)
class FakeRoles(RoleModels):
    """Role models that are all scripted fakes (their prompts are in `.calls`)."""

    doctor: ScriptedChatModel
    patient: ScriptedChatModel
    measurement: ScriptedChatModel
    moderator: ScriptedChatModel


def role_models(
    doctor: Callable[[list[BaseMessage]], str | AIMessage] = lambda m: "DIAGNOSIS READY: Unknown",
    patient: Callable[[list[BaseMessage]], str | AIMessage] = lambda m: "It hurts.",
    measurement: Callable[[list[BaseMessage]], str | AIMessage] = lambda m: "RESULTS: NORMAL READINGS",
    moderator: Callable[[list[BaseMessage]], str | AIMessage] = lambda m: "No",
) -> FakeRoles:
    """Four independent role fakes."""
    return FakeRoles(
        doctor=role(doctor), patient=role(patient), measurement=role(measurement), moderator=role(moderator)
    )


class SlowScriptedChatModel(ScriptedChatModel):
    """A scripted fake that yields to the event loop for `delay` seconds and tracks calls in flight."""

    delay: float = 0.01
    in_flight: int = 0
    max_in_flight: int = 0

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return self._next(messages, kwargs)
        finally:
            self.in_flight -= 1
