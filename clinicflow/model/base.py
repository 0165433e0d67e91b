"""Plumbing shared by the chat-model backends: `bind_tools` and turning reply text into an `AIMessage`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from clinicflow.model.tool_calls import ToolSpec, normalize_tool_choice, parse_reply, tool_specs

__all__ = ["PromptToolChatModel", "usage"]


def usage(input_tokens: int, output_tokens: int) -> UsageMetadata:
    """Token counts in langchain's `usage_metadata` shape."""
    return UsageMetadata(
        input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens
    )


class PromptToolChatModel(BaseChatModel):
    """A chat model whose tools are described in the prompt and whose calls are parsed from its text.

    `bind_tools` binds `ToolSpec`s and a normalized `tool_choice` (`auto`, `none`, `any` or a tool name);
    backends receive them as the `tools` and `tool_choice` keyword arguments of `_generate`.
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
