"""An oracle chat model for EHRQA: issues each question's gold tool calls, keeps the gold evidence, answers
the gold answer. Run through the real graph, tools and scorer it must score 100%."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall
from langchain_core.outputs import ChatGeneration, ChatResult

from clinicflow.agents.ehr_qa import FINISH_TOOL_NAME, citations_in
from clinicflow.evals.ehrqa.questions import Question
from tests.fakes import FakeChatModel

__all__ = ["OracleChatModel", "question_text"]

_SECTIONS = ("\n\nEvidence lines:\n", "\n\nFacts:\n")
T = TypeVar("T")


def question_text(messages: Sequence[BaseMessage]) -> tuple[str, str]:
    """(question, rest) from the first human message of a planner, extractor, answerer or full prompt."""
    human = next(m.text for m in messages if isinstance(m, HumanMessage))
    if "\n\nQuestion: " in human:
        return human.rpartition("\n\nQuestion: ")[2], ""
    body = human.removeprefix("Question: ")
    for marker in _SECTIONS:
        if marker in body:
            head, _, rest = body.partition(marker)
            return head, rest
    return body, ""


class OracleChatModel(FakeChatModel):
    """Answers the `active` question (set it before each run: texts repeat across patients) with its gold
    calls and gold answer; counts the calls it answers."""

    active: Question | None = None
    calls: int = 0

    def wrap(self, answer: Callable[[Question], Awaitable[T]]) -> Callable[[Question], Awaitable[T]]:
        """An answerer that makes each question active before answering it (runs one at a time)."""

        async def run(question: Question) -> T:
            self.active = question
            return await answer(question)

        return run

    @property
    def _llm_type(self) -> str:
        return "ehrqa-oracle"

    def _reply(self, messages: list[BaseMessage], tool_names: list[str]) -> AIMessage:
        text, rest = question_text(messages)
        q = self.active
        if q is None or q.text != text:
            raise AssertionError(f"the oracle was asked {text!r} but holds {q.text if q else None!r}")
        if "search_record" in tool_names:
            searched = any(
                isinstance(m, AIMessage) and any(c["name"] == "search_record" for c in m.tool_calls)
                for m in messages
            )
            if searched:
                return AIMessage("", tool_calls=[ToolCall(name=FINISH_TOOL_NAME, args={}, id="finish")])
            calls = [
                ToolCall(name="search_record", args=c.tool_args(), id=f"gold{i}")
                for i, c in enumerate(q.gold_calls)
            ]
            return AIMessage("", tool_calls=calls)
        gold = set(q.gold_ids)
        if "record_facts" in tool_names:
            lines = [line.removeprefix("- ") for line in rest.splitlines()]
            facts = [
                {"text": line, "citations": [c for c in citations_in(line) if c in gold]}
                for line in lines
                if gold & set(citations_in(line))
            ]
            return AIMessage(
                "", tool_calls=[ToolCall(name="record_facts", args={"facts": facts}, id="facts")]
            )
        if "final_answer" in tool_names:
            cited = [c for c in citations_in(rest) if c in gold]
            args = {"answer": q.answer_text, "citations": cited}
            return AIMessage("", tool_calls=[ToolCall(name="final_answer", args=args, id="answer")])
        return AIMessage(q.answer_text)

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        self.calls += 1
        tool_names = [t["function"]["name"] for t in kwargs.get("tools") or []]
        reply = self._reply(messages, tool_names)
        tokens_in = sum(math.ceil(len(m.text) / 4) for m in messages)
        tokens_out = math.ceil((len(reply.text) + len(str(reply.tool_calls))) / 4)
        reply.usage_metadata = {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
        return ChatResult(generations=[ChatGeneration(message=reply)])
