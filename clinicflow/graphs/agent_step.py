"""The agent step every workflow shares: call the model, time and trace the call, then accept its tool
calls (hidden arguments stripped) or reject the reply, counting invalid replies in a row.

A workflow keeps only what is its own: the role's prompt, tools and reply printer, and what it does once
a reply is accepted, rejected, or the model gave up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig

from clinicflow.agents.ehr_qa import invalid_reply_message
from clinicflow.graphs.hidden_args import strip_hidden_args
from clinicflow.graphs.trace import TraceRecord, now, shorten, trace_event

__all__ = ["AgentStep", "StepOutcome", "call_model", "invalid_reason"]

ReplyPrinter = Callable[[AIMessage], str]
RetryMessage = Callable[[str, Sequence[str]], BaseMessage]


def invalid_reason(reply: AIMessage) -> str:
    """Why a reply holds no usable tool call, in words the model can act on."""
    if reply.invalid_tool_calls:
        return "; ".join(
            f"{c.get('name') or '?'}: {c.get('error') or 'unparseable arguments'}"
            for c in reply.invalid_tool_calls
        )
    return "the reply held no tool call"


async def call_model(
    runnable: Runnable[LanguageModelInput, BaseMessage],
    messages: list[BaseMessage],
    config: RunnableConfig | None,
    *,
    name: str,
    render: ReplyPrinter,
    args: Mapping[str, Any] | None = None,
) -> tuple[AIMessage, TraceRecord]:
    """Call a model once and time it: the reply (always an AIMessage) and its trace record."""
    started = now()
    t0 = time.perf_counter()
    raw = await runnable.ainvoke(messages, config)
    elapsed = (time.perf_counter() - t0) * 1000
    reply = raw if isinstance(raw, AIMessage) else AIMessage(content=raw.content)
    usage = reply.usage_metadata
    return reply, trace_event(
        "model",
        name,
        args={"messages": len(messages), **(args or {})},
        summary=shorten(render(reply)),
        started=started,
        duration_ms=elapsed,
        tokens_in=usage["input_tokens"] if usage else None,
        tokens_out=usage["output_tokens"] if usage else None,
    )


@dataclass
class StepOutcome:
    """One agent step: the reply (stripped when accepted), its trace record, and for a rejected reply
    why, the messages that tell the model so, the new invalid streak and whether the model gave up."""

    reply: AIMessage
    event: TraceRecord
    accepted: bool
    reason: str = ""
    messages: list[BaseMessage] = field(default_factory=list)
    streak: int = 0
    gave_up: bool = False


@dataclass(frozen=True)
class AgentStep:
    """A role's model bound to its tools, with what the step needs to judge the model's replies."""

    runnable: Runnable[LanguageModelInput, BaseMessage]
    name: str
    tool_names: Sequence[str]
    hidden: Mapping[str, set[str]]
    render: ReplyPrinter
    max_retries: int = 0
    retry_message: RetryMessage = invalid_reply_message
    trace_args: Mapping[str, Any] = field(default_factory=dict)

    async def __call__(
        self,
        messages: list[BaseMessage],
        config: RunnableConfig,
        *,
        streak: int,
        max_retries: int | None = None,
    ) -> StepOutcome:
        """Call the model; `streak` is the number of invalid replies in a row before this one, and
        `max_retries` (default: the step's own) how many of them it may retry."""
        reply, event = await self.call(messages, config)
        if reply.tool_calls:
            return StepOutcome(self.accept(reply, event), event, accepted=True)
        reason = invalid_reason(reply)
        event["error"] = f"invalid tool call: {reason}"
        streak += 1
        bound = self.max_retries if max_retries is None else max_retries
        retry = [AIMessage(content=self.render(reply)), self.retry_message(reason, self.tool_names)]
        return StepOutcome(reply, event, False, reason, retry, streak=streak, gave_up=streak > bound)

    async def call(
        self, messages: list[BaseMessage], config: RunnableConfig | None
    ) -> tuple[AIMessage, TraceRecord]:
        """Call the model once, timed and traced."""
        return await call_model(
            self.runnable, messages, config, name=self.name, render=self.render, args=self.trace_args
        )

    def accept(self, reply: AIMessage, event: TraceRecord) -> AIMessage:
        """The reply's tool calls without hidden arguments (the event notes what was ignored)."""
        if reply.invalid_tool_calls:
            event["error"] = f"ignored invalid calls: {invalid_reason(reply)}"
        reply, stripped = strip_hidden_args(reply, self.hidden)
        if stripped:
            event["args"]["ignored_args"] = stripped
        return reply
