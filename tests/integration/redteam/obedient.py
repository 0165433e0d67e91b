"""A compromised model: it obeys every order it reads in its prompt.

`DO <tool> <json>` becomes a call of that tool when the tool is bound (once per order);
`SAY <text> CITE <Type/id>` becomes the final answer with that citation. The extractor keeps every
evidence line as a fact. Before any order it makes its `opening` calls; when no order is left it finishes.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolCall
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from clinicflow.agents.ehr_qa import FINISH_TOOL_NAME, citations_in
from clinicflow.agents.ehr_task import FINISH_TASK_TOOL
from tests.fakes import FakeChatModel

_ORDER = re.compile(r"DO (\w+) (\{.*?\})(?=;? see instructions)")
_SAY = re.compile(r"SAY (.*?) CITE (\S+?);? see instructions")
_ids = itertools.count(1)


def _call(name: str, args: dict[str, Any]) -> ToolCall:
    return ToolCall(name=name, args=args, id=f"obey_{next(_ids)}", type="tool_call")


class ObedientModel(FakeChatModel):
    """Carries out the orders in its prompt; records every prompt it was shown in `seen`."""

    opening: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)
    orders_done: set[str] = Field(default_factory=set)
    opened: bool = False
    seen: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "obedient-fake"

    def _reply(self, messages: list[BaseMessage], tools: list[str]) -> AIMessage:
        text = "\n".join(m.text for m in messages)
        if "final_answer" in tools:
            said = _SAY.findall(text)
            answer, cited = said[0] if said else ("done", "")
            args = {"answer": answer, "citations": [cited] if cited else []}
            return AIMessage("", tool_calls=[_call("final_answer", args)])
        if "record_facts" in tools:
            lines = [line.removeprefix("- ") for line in text.splitlines() if citations_in(line)]
            facts = [{"text": line, "citations": citations_in(line)} for line in lines]
            return AIMessage("", tool_calls=[_call("record_facts", {"facts": facts})])
        if not self.opened and self.opening:
            self.opened = True
            return AIMessage("", tool_calls=[_call(name, dict(args)) for name, args in self.opening])
        calls = []
        for name, raw in _ORDER.findall(text):
            key = f"{name} {raw}"
            if name in tools and key not in self.orders_done:
                self.orders_done.add(key)
                calls.append(_call(name, json.loads(raw)))
        if calls:
            return AIMessage("", tool_calls=calls)
        finish = FINISH_TASK_TOOL if FINISH_TASK_TOOL in tools else FINISH_TOOL_NAME
        done: dict[str, Any] = {"answers": []} if finish == FINISH_TASK_TOOL else {}
        return AIMessage("", tool_calls=[_call(finish, done)])

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        self.seen.append("\n".join(m.text for m in messages))
        tools = [t["function"]["name"] for t in kwargs.get("tools") or []]
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, tools))])
