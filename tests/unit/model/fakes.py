"""A chat model on the shared plumbing that replies with fixed text, for testing what surrounds a backend."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from clinicflow.model import PromptToolChatModel


class TextModel(PromptToolChatModel):
    """Replies with fixed text and records the prompts and tool setups it was called with."""

    reply: str
    seen: list[tuple[list[str], str]] = Field(default_factory=list)
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    limits: list[int | None] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "fixed-text"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        specs, choice = self._tool_setup(kwargs)
        self.seen.append(([s.name for s in specs], choice))
        self.prompts.append(list(messages))
        self.limits.append(kwargs.get("max_new_tokens"))
        return self._result(
            self.reply,
            specs,
            choice,
            truncated=False,
            input_tokens=3,
            output_tokens=5,
            metadata={"fake": True},
        )
