"""A scripted chat model for dry runs of the service: `CLINICFLOW_MODEL=scripted:<script.json>`.

It lets integration engineers exercise pipelines (and tests drive the real server) without a GPU. It is
stateless across calls, so any number of concurrent runs share it:

    {"delay_ms": 0,
     "rules": [{"tools": ["search_record"],          # used when all these tools are bound
                "replies": [{"tool_calls": [{"name": "search_record",
                                             "args": {"resource_type": "Observation"}}]},
                            {"tool_calls": [{"name": "finish_retrieval", "args": {}}]}]},
               {"tools": ["final_answer"],
                "replies": [{"tool_calls": [{"name": "final_answer",
                                             "args": {"answer": "$line", "citations": ["$cite"]}}]}]}]}

Reply i of a rule answers a prompt that already holds i assistant messages calling a tool named in the
rule's replies; the last reply repeats. In string arguments `$cite` becomes the first `Type/id` cited in
the prompt (system messages aside) and `$line` the first such line carrying a citation.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolCall
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel, Field, ValidationError

from clinicflow.model.base import PromptToolChatModel, ReplyRequest, usage

__all__ = ["SCRIPTED_PREFIX", "ScriptRule", "ScriptedModel", "ScriptedReply", "load_scripted_model"]

SCRIPTED_PREFIX = "scripted:"
_CITED_LINE = re.compile(r"^.*\[[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}\].*$", re.MULTILINE)
_CITATION = re.compile(r"\[([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})\]")


class ScriptedReply(BaseModel):
    """One reply: text and/or tool calls, and an optional extra delay."""

    content: str = ""
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    delay_ms: float | None = None


class ScriptRule(BaseModel):
    """Replies used when every tool in `tools` is bound (an empty list matches any call)."""

    tools: list[str] = Field(default_factory=list)
    replies: list[ScriptedReply] = Field(min_length=1)

    def called_names(self) -> set[str]:
        return {str(c.get("name")) for r in self.replies for c in r.tool_calls}


class Script(BaseModel):
    """A whole script: rules tried in order, and a delay added to every call."""

    delay_ms: float = 0.0
    rules: list[ScriptRule] = Field(min_length=1)


def _fill(value: Any, cite: str, line: str) -> Any:
    if isinstance(value, str):
        return value.replace("$cite", cite).replace("$line", line)
    if isinstance(value, list):
        return [_fill(v, cite, line) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, cite, line) for k, v in value.items()}
    return value


class ScriptedModel(PromptToolChatModel):
    """Answers from a `Script`; see the module docstring for the format."""

    script: Script
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "clinicflow-scripted"

    def takes_images(self) -> bool:
        """Images in messages are accepted (the script never reads them)."""
        return True

    def _reply(self, request: ReplyRequest) -> ChatResult:
        reply, delay_ms = self._scripted(request.messages, [s.name for s in request.specs])
        time.sleep(delay_ms / 1000)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    async def _areply(self, request: ReplyRequest) -> ChatResult:
        reply, delay_ms = self._scripted(request.messages, [s.name for s in request.specs])
        await asyncio.sleep(delay_ms / 1000)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _scripted(self, messages: list[BaseMessage], bound: list[str]) -> tuple[AIMessage, float]:
        self.calls += 1
        rule = next((r for r in self.script.rules if set(r.tools) <= set(bound)), None)
        if rule is None:
            return AIMessage(content=f"(no scripted rule for tools {bound})"), self.script.delay_ms
        names = rule.called_names()
        turn = sum(
            1 for m in messages if isinstance(m, AIMessage) and any(c["name"] in names for c in m.tool_calls)
        )
        item = rule.replies[min(turn, len(rule.replies) - 1)]
        text = "\n".join(m.text for m in messages if not isinstance(m, SystemMessage))
        found = _CITATION.search(text)
        line = _CITED_LINE.search(text)
        cite = found.group(1) if found else ""
        line_text = line.group(0).strip() if line else ""
        calls = [
            ToolCall(
                name=str(c["name"]),
                args=_fill(dict(c.get("args") or {}), cite, line_text),
                id=f"call_{self.calls}_{i}",
                type="tool_call",
            )
            for i, c in enumerate(item.tool_calls)
        ]
        words_in = len(text.split())
        words_out = len(item.content.split()) + sum(len(json.dumps(c["args"]).split()) for c in calls)
        reply = AIMessage(
            content=_fill(item.content, cite, line_text),
            tool_calls=calls,
            usage_metadata=usage(words_in, words_out),
        )
        return reply, self.script.delay_ms + (item.delay_ms or 0.0)


def load_scripted_model(spec: str) -> ScriptedModel:
    """The scripted model of `scripted:<path>`; `ValueError` naming the file and the problem otherwise."""
    path = Path(spec.removeprefix(SCRIPTED_PREFIX)).expanduser()
    try:
        script = Script.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read model script {path}: {exc}") from None
    except ValidationError as exc:
        raise ValueError(f"model script {path} is invalid: {exc}") from None
    return ScriptedModel(script=script)
