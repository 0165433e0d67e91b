"""Oracle retrieval check, no model involved: call the search tool with each question's gold arguments and
check that every gold resource is cited in the output, and that calls marked `expect_absent` find nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.tools import BaseTool

from clinicflow.agents.ehr_qa import citations_in
from clinicflow.evals.ehrqa.questions import GoldCall, Question
from clinicflow.evals.ehrqa.scoring import REFUSAL

__all__ = ["SEARCH_TOOL", "GoldCallRunner", "RetrievalMiss", "RetrievalReport", "check_retrieval"]

SEARCH_TOOL = "search_record"


@dataclass(frozen=True)
class RetrievalMiss:
    """A question whose gold calls did not return its gold resources (or found what should be absent)."""

    question_id: str
    patient_id: str
    qtype: str
    question: str
    problem: str

    def __str__(self) -> str:
        first = self.question.splitlines()[0]
        return f"MISS {self.question_id} ({self.qtype}, patient {self.patient_id}): {first} -- {self.problem}"


@dataclass
class RetrievalReport:
    """Hits and misses of the oracle check."""

    checked: int = 0
    misses: list[RetrievalMiss] = field(default_factory=list)
    calls: int = 0
    seconds: float = 0.0

    @property
    def hits(self) -> int:
        return self.checked - len(self.misses)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.checked if self.checked else 0.0

    def summary(self) -> str:
        """One line: the hit rate with counts."""
        return (
            f"Oracle retrieval hit rate: {100 * self.hit_rate:.1f}% ({self.hits}/{self.checked} questions, "
            f"{self.calls} tool calls, {self.seconds:.1f} s)"
        )


class GoldCallRunner:
    """Runs gold calls through the real search tool for a patient, each distinct call once."""

    def __init__(self, tools: Sequence[BaseTool]) -> None:
        found = [t for t in tools if t.name == SEARCH_TOOL]
        if not found:
            raise ValueError(f"no {SEARCH_TOOL!r} tool among {[t.name for t in tools]}")
        self.tool = found[0]
        self._cache: dict[tuple[str, str], str] = {}

    @property
    def calls(self) -> int:
        return len(self._cache)

    async def __call__(self, patient_id: str, call: GoldCall) -> str:
        args = call.tool_args()
        key = (patient_id, json.dumps(args, sort_keys=True))
        if key not in self._cache:
            output: Any = await self.tool.ainvoke({**args, "patient_id": patient_id})
            self._cache[key] = output if isinstance(output, str) else str(output)
        return self._cache[key]


async def check_question(run: GoldCallRunner, question: Question) -> str | None:
    """Why the gold calls fail this question, or None when they retrieve its gold resources."""
    cited: set[str] = set()
    for call in question.gold_calls:
        output = await run(question.patient_id, call)
        if call.expect_absent:
            if REFUSAL not in output:
                return f"expected nothing for {call.tool_args()}, got: {output.splitlines()[0][:160]}"
            continue
        cited.update(citations_in(output))
    missing = [g for g in question.gold_ids if g not in cited]
    if missing:
        calls = "; ".join(json.dumps(c.tool_args()) for c in question.gold_calls)
        return f"gold {', '.join(missing)} not in the output of {calls}"
    return None


async def check_retrieval(
    questions: Sequence[Question],
    tools: Sequence[BaseTool],
    *,
    on_miss: Callable[[RetrievalMiss], None] | None = None,
) -> RetrievalReport:
    """Run every question's gold calls and report which gold resources the tool output lacked."""
    started = time.perf_counter()
    run = GoldCallRunner(tools)
    report = RetrievalReport()
    for q in questions:
        problem = await check_question(run, q)
        report.checked += 1
        if problem is not None:
            miss = RetrievalMiss(q.id, q.patient_id, q.qtype, q.text, problem)
            report.misses.append(miss)
            if on_miss is not None:
                on_miss(miss)
    report.calls = run.calls
    report.seconds = time.perf_counter() - started
    return report
