"""Nodes of the EHR question-answering graph: plan, retrieve, extract, answer.

The model and the tools are bound once when `EhrQaNodes` is built; each node only reads state and
returns an update. Every model call and tool call is timed into the state's trace.
Evidence is any cited tool output: record lines `[ResourceType/id]`, guideline passages
`[guideline: ...]` and image lines `[image: ...]`; an answer must cite a record resource unless the
answerer marked it as general guidance (see `ANSWERER_PROMPT`), and each of its claims must say what the
lines it cites say (`claims.check_answer`): unsupported claims are removed, and an answer left with none
ends the run `unsupported`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ValidationError

from clinicflow.agents.ehr_qa import (
    ANSWERER,
    BAD_ARGUMENTS_TEMPLATE,
    EXTRACTOR,
    FINISH_TOOL_NAME,
    GUIDANCE_PREFIX,
    NOT_FOUND,
    PLANNER,
    TOOL_FAILED_TEMPLATE,
    UNKNOWN_TOOL_TEMPLATE,
    ExtractedFacts,
    Fact,
    FinalAnswer,
    Role,
    answerer_messages,
    bind_role,
    citation_kind,
    citations_in,
    extractor_messages,
    invalid_reply_message,
    is_record_citation,
    is_refusal,
    normalize_citation,
    planner_messages,
    render_reply,
    strip_citations,
)
from clinicflow.graphs.agent_step import AgentStep, call_model, invalid_reason
from clinicflow.graphs.ehr_qa.claims import ClaimCheck, check_answer
from clinicflow.graphs.ehr_qa.state import EvidenceRecord, FactRecord, State, Status, TraceRecord
from clinicflow.graphs.hidden_args import hidden_args, input_fields
from clinicflow.graphs.limits import RunLimits, out_of_supersteps
from clinicflow.graphs.tool_round import guarded_tool_node, read_tool_round
from clinicflow.graphs.trace import shorten as _short
from clinicflow.graphs.trace import trace_event as _event

__all__ = ["FAILED_ANSWER", "EhrQaNodes", "evidence_items"]

FAILED_ANSWER = "no answer: the model did not return a valid final answer"
TOOL_TEMPLATES = {
    "failed": TOOL_FAILED_TEMPLATE,
    "bad_arguments": BAD_ARGUMENTS_TEMPLATE,
    "unknown": UNKNOWN_TOOL_TEMPLATE,
}
_LEADING_CITATION = re.compile(r"^\[[^\[\]]+\]")


def _parse_contract(
    reply: AIMessage, tool_name: str, schema: type[BaseModel]
) -> tuple[BaseModel | None, str]:
    """The reply's contract call validated against its schema, or None and why not."""
    for call in reply.tool_calls:
        if call["name"] == tool_name:
            try:
                return schema.model_validate(call["args"]), ""
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                return None, f"{tool_name} arguments do not match its schema: {problems}"
    if reply.tool_calls:
        return None, f"expected a call of {tool_name}, got {', '.join(c['name'] for c in reply.tool_calls)}"
    return None, invalid_reason(reply)


def _summarize_lines(message: ToolMessage) -> str:
    lines = [line for line in message.text.splitlines() if line.strip()]
    return f"{len(lines)} lines, {len(evidence_items(message.text))} cited"


def evidence_items(text: str) -> list[str]:
    """The cited items of a tool result: each cited line, except that a line opening with a citation
    (a guideline passage's heading) takes the uncited lines after it, and becomes one item on one line."""
    items: list[list[str]] = []
    passage_open = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if citations_in(line):
            items.append([line])
            opening = _LEADING_CITATION.match(line)
            passage_open = opening is not None and bool(citations_in(opening.group(0)))
        elif passage_open:
            items[-1].append(line)
    return [" ".join(" ".join(parts).split()) for parts in items]


def _with_record_companions(citations: Sequence[str], evidence: Sequence[EvidenceRecord]) -> list[str]:
    """The citations plus the record resources cited on the same evidence line as a cited image."""
    images = {c for c in citations if citation_kind(c) == "image"}
    extra = [
        c
        for e in evidence
        if images.intersection(e["citations"])
        for c in e["citations"]
        if is_record_citation(c)
    ]
    return list(dict.fromkeys([*citations, *extra]))


def _split_citations(raw: Sequence[str], known: set[str]) -> tuple[list[str], list[str]]:
    """Citations found in the evidence, and the others (malformed ones as given), without repeats."""
    kept: dict[str, None] = {}
    dropped: dict[str, None] = {}
    for value in raw:
        citation = normalize_citation(value)
        if citation is not None and citation in known:
            kept[citation] = None
        else:
            dropped[citation or value] = None
    return list(kept), list(dropped)


_SUPERSTEPS_TO_FINISH = 4
"""plan (this one), retrieve its calls, extract, answer."""


class EhrQaNodes:
    """The graph's nodes, holding the bound model and the tool node built once per graph."""

    def __init__(
        self,
        model: BaseChatModel,
        tools: Sequence[BaseTool],
        *,
        limits: RunLimits,
        manifest_tool: str | None,
    ) -> None:
        names = [t.name for t in tools]
        if len(set(names)) != len(names) or FINISH_TOOL_NAME in names:
            raise ValueError(f"tool names must be unique and not {FINISH_TOOL_NAME!r}: {names}")
        self.limits = limits
        self.manifest_tool = manifest_tool if manifest_tool in names else None
        if self.manifest_tool is not None:
            manifest = next(t for t in tools if t.name == self.manifest_tool)
            fields = input_fields(manifest)
            required = [k for k in manifest.args if k in fields and fields[k].is_required()]
            if required:
                raise ValueError(
                    f"manifest tool {manifest_tool!r} must need no arguments; it needs {required}"
                )
        planner_tools = PLANNER.tools(tools)
        # The first step reads the manifest without asking the model. The planner is offered the same
        # tools at every step (the manifest too), as the fine-tuning examples show them.
        self.planner_tool_names = [t.name for t in planner_tools]
        self._planner = AgentStep(
            model.bind_tools(planner_tools, tool_choice=PLANNER.tool_choice),
            name=PLANNER.name,
            tool_names=self.planner_tool_names,
            hidden=hidden_args(planner_tools),
            max_retries=limits.max_retries,
            render=render_reply,
            retry_message=invalid_reply_message,
            trace_args={"tool_choice": PLANNER.tool_choice},
        )
        self._model = model
        self.tool_node = guarded_tool_node(planner_tools, name="retrieve", templates=TOOL_TEMPLATES)

    async def plan(self, state: State, config: RunnableConfig, runtime: Any = None) -> dict[str, Any]:
        """Ask the planner for the next tool calls; the first step reads the record's manifest. Retrieval
        ends at the run's step limit, or where only the supersteps to finish it are left."""
        history = state.get("messages", [])
        if not history and self.manifest_tool is not None:
            call = ToolCall(
                name=self.manifest_tool, args={}, id=f"call_{self.manifest_tool}", type="tool_call"
            )
            return {"messages": [AIMessage(content="", tool_calls=[call])], "steps": 0}

        limits = self.limits.of(runtime)
        step = await self._planner(
            planner_messages(state["question"], history),
            config,
            streak=state.get("invalid_streak", 0),
            max_retries=limits.max_retries,
        )
        steps = state.get("steps", 0) + 1
        done = steps >= limits.max_steps
        update: dict[str, Any] = {"steps": steps, "trace": [step.event]}
        if not done and out_of_supersteps(state, _SUPERSTEPS_TO_FINISH):
            done = True
            update["errors"] = [f"recursion limit near after {steps} steps: retrieval stopped"]
        if step.accepted:
            done = done or any(c["name"] == FINISH_TOOL_NAME for c in step.reply.tool_calls)
            return update | {"messages": [step.reply], "invalid_streak": 0, "retrieval_done": done}
        update |= {"messages": step.messages, "invalid_streak": step.streak}
        if step.gave_up:
            failure = f"planner gave up after {step.streak} invalid tool calls in a row; last: {step.reason}"
            update["trace"].append(_event("model", PLANNER.name, summary="retrieval stopped", error=failure))
            update["errors"] = [failure]
            done = True
        return update | {"retrieval_done": done}

    async def retrieve(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        """Run the planner's tool calls; keep cited result lines as evidence and time every call."""
        output = await self.tool_node.ainvoke(state, config)
        calls = [c for m in state["messages"][-1:] if isinstance(m, AIMessage) for c in m.tool_calls]
        done = read_tool_round(output["messages"], calls, _summarize_lines)
        evidence = [
            EvidenceRecord(text=line, citations=citations_in(line), tool=m.name or "?")
            for m in done.messages
            if m.tool_call_id not in done.failed
            for line in evidence_items(m.text)
        ]
        return {"messages": done.messages, "evidence": evidence, "trace": done.trace, "errors": done.errors}

    async def _contract_call(
        self,
        runnable: Runnable[LanguageModelInput, BaseMessage],
        role: Role,
        messages: list[BaseMessage],
        config: RunnableConfig,
        max_retries: int,
    ) -> tuple[BaseModel | None, list[TraceRecord], list[str]]:
        """Call a role until it returns valid output of its contract, at most 1 + max_retries times."""
        assert role.output_schema is not None and role.output_tool_name is not None
        conversation = list(messages)
        trace: list[TraceRecord] = []
        reason = ""
        for _ in range(max_retries + 1):
            reply, event = await call_model(
                runnable,
                conversation,
                config,
                name=role.name,
                render=render_reply,
                args={"tool_choice": role.tool_choice},
            )
            trace.append(event)
            parsed, reason = _parse_contract(reply, role.output_tool_name, role.output_schema)
            if parsed is not None:
                return parsed, trace, []
            event["error"] = f"invalid tool call: {reason}"
            conversation += [
                AIMessage(content=render_reply(reply)),
                invalid_reply_message(reason, [role.output_tool_name]),
            ]
        failure = f"{role.name} gave up after {max_retries + 1} invalid replies; last: {reason}"
        trace.append(_event("model", role.name, summary="no valid output", error=failure))
        return None, trace, [failure]

    async def extract(self, state: State, config: RunnableConfig, runtime: Any = None) -> dict[str, Any]:
        """Keep only the facts relevant to the question, each with citations found in the evidence."""
        evidence = state.get("evidence", [])
        if not evidence:
            return {"facts": []}
        cited = [c for e in evidence for c in e["citations"]]
        parsed, trace, errors = await self._contract_call(
            bind_role(self._model, EXTRACTOR, citations=cited),
            EXTRACTOR,
            extractor_messages(state["question"], [e["text"] for e in evidence]),
            config,
            self.limits.of(runtime).max_retries,
        )
        if not isinstance(parsed, ExtractedFacts):
            errors.append("extractor failed: all evidence lines are passed on as facts")
            facts = [FactRecord(text=strip_citations(e["text"]), citations=e["citations"]) for e in evidence]
            return {"facts": facts, "trace": trace, "errors": errors}
        known = {c for e in evidence for c in e["citations"]}
        facts = []
        for fact in parsed.facts:
            kept, dropped = _split_citations([*fact.citations, *citations_in(fact.text)], known)
            if dropped:
                trace.append(_citation_check("extractor", dropped, fact.text))
            if kept:
                facts.append(FactRecord(text=strip_citations(fact.text), citations=kept))
            else:
                trace.append(
                    _event(
                        "check", "citations", summary=f"fact dropped, no citation in evidence: {fact.text!r}"
                    )
                )
        return {"facts": facts, "trace": trace, "errors": errors}

    async def answer(self, state: State, config: RunnableConfig, runtime: Any = None) -> dict[str, Any]:
        """Answer from the facts, citing only retrieved evidence; refuse when nothing supports an answer."""
        facts = state.get("facts", [])
        prior_errors = state.get("errors", [])
        refusal_status: Status = "failed" if prior_errors else "not_found"
        if not facts:
            return {"answer": NOT_FOUND, "citations": [], "status": refusal_status}
        parsed, trace, errors = await self._contract_call(
            bind_role(self._model, ANSWERER, citations=[c for f in facts for c in f["citations"]]),
            ANSWERER,
            answerer_messages(state["question"], [Fact.model_validate(f) for f in facts]),
            config,
            self.limits.of(runtime).max_retries,
        )
        if not isinstance(parsed, FinalAnswer):
            return {
                "answer": FAILED_ANSWER,
                "citations": [],
                "status": "failed",
                "trace": trace,
                "errors": errors,
            }
        if is_refusal(parsed.answer):
            return {"answer": NOT_FOUND, "citations": [], "status": refusal_status, "trace": trace}

        return _checked_answer(parsed, state, trace, refusal_status)


def _refusal(status: Status, trace: list[TraceRecord], summary: str, error: str) -> dict[str, Any]:
    trace.append(_event("check", "citations", summary=summary, error=error))
    return {"answer": NOT_FOUND, "citations": [], "status": status, "trace": trace}


def _checked_answer(
    parsed: FinalAnswer, state: State, trace: list[TraceRecord], refusal_status: Status
) -> dict[str, Any]:
    """The answer with only citations found in the evidence and only the claims they support."""
    evidence = state.get("evidence", [])
    known = {c for e in evidence for c in e["citations"]}
    kept, dropped = _split_citations([*parsed.citations, *citations_in(parsed.answer)], known)
    kept = _with_record_companions(kept, evidence)
    text = strip_citations(parsed.answer, keep=known)
    if dropped:
        trace.append(_citation_check("answerer", dropped, parsed.answer))
    if not kept:
        summary = "answer replaced by refusal: it cites nothing from the retrieved evidence"
        return _refusal(refusal_status, trace, summary, f"unsupported answer: {_short(parsed.answer)}")
    guidance = not any(is_record_citation(c) for c in kept)
    if guidance and parsed.about_record:
        summary = "answer replaced by refusal: a claim about the patient cites no record resource"
        error = f"no record evidence, only {', '.join(kept)}: {_short(parsed.answer)}"
        return _refusal(refusal_status, trace, summary, error)
    if not guidance:
        checks = check_answer(text, kept, evidence, state["question"])
        trace += [_claim_event(check) for check in checks]
        supported = [c for c in checks if c.supported]
        if checks and not supported:
            reason = "; ".join(p for c in checks for p in c.problems)
            error = f"unsupported answer: {_short(reason)}"
            return {
                "answer": NOT_FOUND,
                "citations": [],
                "status": "unsupported",
                "trace": trace,
                "errors": [error],
            }
        if len(supported) < len(checks):
            text = "; ".join(c.claim for c in supported)
            cited = {c for check in supported for c in check.citations}
            kept = [c for c in kept if c in cited]
    missing = [c for c in kept if c not in citations_in(text)]
    if missing:
        text = f"{text} " + " ".join(f"[{c}]" for c in missing)
    if guidance:
        text = f"{GUIDANCE_PREFIX} {text}"
        trace.append(_event("check", "citations", summary="general guidance: cites no record resource"))
    return {"answer": text, "citations": kept, "status": "answered", "trace": trace}


def _claim_event(check: ClaimCheck) -> TraceRecord:
    return _event(
        "check",
        "claims",
        args={"claim": check.claim, "citations": list(check.citations)},
        summary=check.summary(),
        error=None if check.supported else f"unsupported claim: {'; '.join(check.problems)}",
    )


def _citation_check(role: str, dropped: Sequence[str], text: str) -> TraceRecord:
    return _event(
        "check",
        "citations",
        args={"role": role, "dropped": list(dropped)},
        summary=f"dropped, not in the retrieved evidence: {', '.join(dropped)} (in {_short(text, 80)!r})",
    )
