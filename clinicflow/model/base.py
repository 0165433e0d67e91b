"""Plumbing shared by the chat-model backends: `bind_tools`, reading the bound tools back at each call,
and turning reply text into an `AIMessage`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from clinicflow.model.tool_calls import ToolSpec, normalize_tool_choice, parse_reply, tool_specs

__all__ = ["PromptToolChatModel", "ReplyRequest", "usage"]


def usage(input_tokens: int, output_tokens: int) -> UsageMetadata:
    """Token counts in langchain's `usage_metadata` shape."""
    return UsageMetadata(
        input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens
    )


@dataclass(frozen=True)
class ReplyRequest:
    """One call of a chat model as its backend sees it: the bound tools already read from `kwargs`."""

    messages: list[BaseMessage]
    stop: list[str] | None
    specs: list[ToolSpec]
    choice: str
    """`auto`, `none`, `any` or a tool name."""
    kwargs: dict[str, Any]
    """Every keyword argument of the call (`max_new_tokens`, `json_schema`, the bound tools, ...)."""


class PromptToolChatModel(BaseChatModel):
    """A chat model whose tools are described in the prompt and whose calls are parsed from its text.

    `bind_tools` binds `ToolSpec`s and a normalized `tool_choice` (`auto`, `none`, `any` or a tool name);
    they arrive as the `tools` and `tool_choice` keyword arguments of `_generate`, which reads them back
    and asks the backend's `_reply` for the reply (`_areply` for `_agenerate`: by default `_generate`
    in a worker thread; a backend with its own async client overrides it).
    """

    max_new_tokens: int = 256
    """Upper bound on generated tokens per reply."""

    def takes_images(self) -> bool:
        """Whether images in messages reach the model; a text-only model refuses them."""
        return False

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; `tool_choice` is `auto` (default), `none`, `any`/`required` or a bound tool's name."""
        specs = tool_specs(tools)
        choice = normalize_tool_choice(tool_choice, [s.name for s in specs])
        return self.bind(tools=specs, tool_choice=choice, **kwargs)  # type: ignore[return-value]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._reply(ReplyRequest(messages, stop, *self._tool_setup(kwargs), kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await self._areply(ReplyRequest(messages, stop, *self._tool_setup(kwargs), kwargs))

    def _reply(self, request: ReplyRequest) -> ChatResult:
        """The reply to the request's messages under its bound tools (what each backend implements)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _reply nor _generate")

    async def _areply(self, request: ReplyRequest) -> ChatResult:
        """`_reply` without blocking the event loop: `_generate` in a worker thread."""
        return await asyncio.to_thread(self._generate, request.messages, request.stop, None, **request.kwargs)

    def _token_limit(self, kwargs: Mapping[str, Any]) -> int:
        """The call's `max_new_tokens`, else the model's."""
        return int(kwargs.get("max_new_tokens") or self.max_new_tokens)

    @staticmethod
    def _tool_setup(kwargs: Mapping[str, Any]) -> tuple[list[ToolSpec], str]:
        """The bound tools and tool choice from `_generate`'s keyword arguments."""
        specs = tool_specs(kwargs.get("tools") or [])
        if not specs:
            return [], "none"
        return specs, normalize_tool_choice(kwargs.get("tool_choice"), [s.name for s in specs])

    @staticmethod
    def _result(
        text: str,
        specs: Sequence[ToolSpec],
        choice: str,
        *,
        truncated: bool,
        constrained: bool = False,
        input_tokens: int,
        output_tokens: int,
        metadata: dict[str, Any],
    ) -> ChatResult:
        """An `AIMessage` parsed from reply text, with token usage and response metadata."""
        parsed = parse_reply(text, specs, choice, truncated=truncated, constrained=constrained)
        message = AIMessage(
            content=parsed.content,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata=usage(input_tokens, output_tokens),
            response_metadata={**metadata, "raw_text": text},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
