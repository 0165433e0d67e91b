"""Test doubles shared by unit tests: a scripted chat model that replays replies and records prompts."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, InvalidToolCall, ToolCall
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

__all__ = [
    "FakeCall",
    "FakeChatModel",
    "ScriptExhaustedError",
    "ScriptedChatModel",
    "calls",
    "invalid_call",
    "text_reply",
    "tool_call",
]

ScriptItem = AIMessage | BaseException | Callable[[list[BaseMessage]], AIMessage]

_ids = itertools.count(1)


class ScriptExhaustedError(AssertionError):
    """The model was called more often than its script has replies."""


@dataclass
class FakeCall:
    """One call the fake model received: the prompt, the bound tool schemas and the tool choice."""

    messages: list[BaseMessage]
    tools: list[dict[str, Any]]
    tool_choice: Any

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    @property
    def text(self) -> str:
        return "\n".join(m.text for m in self.messages)


class FakeChatModel(BaseChatModel):
    """A chat model whose replies come from `_next`, sync or async; bound tools arrive in its kwargs as
    OpenAI schemas under `tools`, with `tool_choice`."""

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        schemas = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=schemas, tool_choice=tool_choice, **kwargs)

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._next(messages, kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._next(messages, kwargs)


class ScriptedChatModel(FakeChatModel):
    """Replays `script` in order: an AIMessage is returned, an exception raised, a callable called with
    the prompt. Every call is recorded in `calls`, bound copies included."""

    script: list[Any] = Field(default_factory=list)
    calls: list[FakeCall] = Field(default_factory=list)
    position: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    @property
    def prompts(self) -> list[list[BaseMessage]]:
        return [c.messages for c in self.calls]

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        self.calls.append(FakeCall(list(messages), kwargs.get("tools") or [], kwargs.get("tool_choice")))
        if self.position >= len(self.script):
            raise ScriptExhaustedError(
                f"call {len(self.calls)} but the script has {len(self.script)} replies"
            )
        item = self.script[self.position]
        self.position += 1
        if isinstance(item, BaseException):
            raise item
        reply = item(list(messages)) if callable(item) else item
        reply = reply.model_copy(deep=True)
        if reply.usage_metadata is None:
            words_in = sum(len(m.text.split()) for m in messages)
            words_out = len(reply.text.split()) + sum(len(str(c["args"]).split()) for c in reply.tool_calls)
            reply.usage_metadata = {
                "input_tokens": words_in,
                "output_tokens": words_out,
                "total_tokens": words_in + words_out,
            }
        return ChatResult(generations=[ChatGeneration(message=reply)])


def tool_call(name: str, **args: Any) -> ToolCall:
    """A well-formed tool call with a fresh id."""
    return ToolCall(name=name, args=args, id=f"call_{next(_ids)}", type="tool_call")


def calls(*tool_calls: ToolCall) -> AIMessage:
    """A reply holding the given tool calls."""
    return AIMessage(content="", tool_calls=list(tool_calls))


def invalid_call(name: str | None, args: str, error: str) -> AIMessage:
    """A reply whose only call failed to parse or validate, as the model layer reports it."""
    bad = InvalidToolCall(
        name=name, args=args, id=f"call_{next(_ids)}", error=error, type="invalid_tool_call"
    )
    return AIMessage(content="", invalid_tool_calls=[bad])


def text_reply(text: str) -> AIMessage:
    """A plain-text reply with no tool call."""
    return AIMessage(content=text)
