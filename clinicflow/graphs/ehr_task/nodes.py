"""Nodes of the EHR task graph: agent, tools, approve, write.

The model, the read tools and the writer are bound once when `EhrTaskNodes` is built. `tools` runs read
calls and turns write calls into prepared writes (nothing is sent); `approve` stops the graph with an
interrupt holding the exact resource (or applies an explicit auto-approve policy); `write` executes one
approved write. Every model call, tool call, decision and write is timed into the trace.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.types import interrupt
from pydantic import ValidationError

from clinicflow.agents.ehr_qa import BAD_ARGUMENTS_TEMPLATE, UNKNOWN_TOOL_TEMPLATE
from clinicflow.agents.ehr_task import (
    FINISH_TASK_TOOL,
    TASK_TOOL_TEMPLATES,
    TaskAnswer,
    finish_task_tool,
    invalid_task_reply,
    render_task_reply,
    task_messages,
)
from clinicflow.graphs.agent_step import AgentStep
from clinicflow.graphs.ehr_task.state import State, WriteRecord, WriteStatus
from clinicflow.graphs.hidden_args import hidden_args
from clinicflow.graphs.limits import RunLimits, out_of_supersteps
from clinicflow.graphs.tool_round import ToolRound, guarded_tool_node, read_tool_round
from clinicflow.graphs.trace import now as _now
from clinicflow.graphs.trace import trace_event as _event
from clinicflow.tools.write_tools import (
    ApprovalPolicy,
    Edit,
    FhirWriter,
    PreparedWrite,
    Reject,
    WriteArgumentsError,
    WriteOutcome,
    approval_request,
    finalize_resource,
    make_write_tools,
    parse_decision,
    prepare_write,
)

__all__ = ["EhrTaskNodes"]

AUTO_APPROVER = "policy:auto_approve"
REVIEWER = "reviewer"


def _record(
    call_id: str,
    tool: str,
    status: WriteStatus,
    *,
    write: PreparedWrite | None = None,
    reference: str | None = None,
    decided_by: str | None = None,
    reason: str | None = None,
    errors: Sequence[str] = (),
) -> WriteRecord:
    return WriteRecord(
        tool_call_id=call_id,
        tool=tool,
        resource_type=write.resource_type if write else None,
        identifier=f"{write.identifier_system}|{write.identifier_value}" if write else None,
        status=status,
        reference=reference,
        decided_by=decided_by,
        reason=reason,
        errors=list(errors),
        resource=dict(write.resource) if write else None,
        at=_now(),
    )


def _outcome_text(write: PreparedWrite, outcome: WriteOutcome, decided_by: str) -> str:
    if outcome.status == "created":
        return f"Created {outcome.reference} (approved by {decided_by}). [{outcome.reference}]"
    if outcome.status == "existing":
        return (
            f"{outcome.reference} already holds this write (same identifier); nothing new was created. "
            f"[{outcome.reference}]"
        )
    listed = "; ".join(outcome.errors) or "unknown error"
    if outcome.status == "invalid":
        return (
            f"Write not done: invalid FHIR R4 {write.resource_type}: {listed}\n"
            "Nothing was written. Fix the resource and call the tool again."
        )
    return f"Write failed: FHIR server error: {listed}\nNothing is known to be written."


def _not_written(write: PreparedWrite, text: str, record: WriteRecord) -> dict[str, Any]:
    """The update for a write that was decided against: the agent is told why, nothing is sent."""
    message = ToolMessage(text, name=write.tool, tool_call_id=write.tool_call_id, status="error")
    return {"approved": None, "messages": [message], "writes": [record]}


def _finish(call: ToolCall, done: ToolRound) -> dict[str, Any]:
    """Record the agent's `finish_task` call: its answers end the task; bad arguments go back to it."""
    name, call_id = call["name"], call["id"] or ""
    try:
        answer = TaskAnswer.model_validate(call["args"])
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        text = BAD_ARGUMENTS_TEMPLATE.format(tool=name, error=problems)
        done.messages.append(ToolMessage(text, name=name, tool_call_id=call_id, status="error"))
        return {}
    done.messages.append(ToolMessage("Task finished.", name=name, tool_call_id=call_id))
    done.trace.append(_event("tool", name, args=dict(call["args"]), summary=f"answers {answer.answers}"))
    return {
        "answers": list(answer.answers),
        "summary": answer.summary,
        "status": "finished",
        "finished": True,
    }


SUPERSTEPS_PER_ROUND = 12
"""What one model call may take at most: agent, tools, then an approve and a write per proposed write."""


class EhrTaskNodes:
    """The graph's nodes, holding the bound model, the read tool node and the writer, built once per graph."""

    def __init__(
        self,
        model: BaseChatModel,
        read_tools: Sequence[BaseTool],
        writer: FhirWriter,
        *,
        write_tools: Sequence[BaseTool] | None = None,
        approval: ApprovalPolicy = "require",
        limits: RunLimits,
    ) -> None:
        writes = list(write_tools) if write_tools is not None else make_write_tools()
        finish = finish_task_tool()
        tools = [*read_tools, *writes, finish]
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique (and not {FINISH_TASK_TOOL!r}): {names}")
        if approval not in ("require", "auto_approve"):
            raise ValueError(f"approval must be 'require' or 'auto_approve', got {approval!r}")
        self.writer = writer
        self.approval: ApprovalPolicy = approval
        self.limits = limits
        self.read_names = {t.name for t in read_tools}
        self.write_names = {t.name for t in writes}
        self.tool_names = names
        self._agent = AgentStep(
            model.bind_tools(tools, tool_choice="any"),
            name="task_agent",
            tool_names=names,
            hidden=hidden_args(read_tools),
            max_retries=limits.max_retries,
            render=render_task_reply,
            retry_message=invalid_task_reply,
        )
        self.tool_node = (
            guarded_tool_node(read_tools, name="tools", templates=TASK_TOOL_TEMPLATES) if read_tools else None
        )

    # -- agent -------------------------------------------------------------------------------------

    async def agent(self, state: State, config: RunnableConfig, runtime: Any = None) -> dict[str, Any]:
        """Ask the model for its next tool calls; retry an invalid reply a bounded number of times. The
        run ends at its step limit, or where a round of calls and writes might not fit in its supersteps."""
        limits = self.limits.of(runtime)
        if out_of_supersteps(state, SUPERSTEPS_PER_ROUND):
            return self._step_limit(f"recursion limit near after {state.get('steps', 0)} steps")
        run_id = state.get("run_id") or config.get("configurable", {}).get("thread_id") or uuid.uuid4().hex
        prompt = task_messages(
            state["instruction"],
            context=state.get("context") or "",
            now=state.get("now"),
            patient_label=state.get("patient_label") or _patient_label(state.get("patient_id")),
            history=state.get("messages", []),
        )
        step = await self._agent(
            prompt, config, streak=state.get("invalid_streak", 0), max_retries=limits.max_retries
        )
        steps = state.get("steps", 0) + 1
        update: dict[str, Any] = {
            "steps": steps,
            "trace": [step.event],
            "run_id": run_id,
            "approval_policy": self.approval,
        }
        if step.accepted:
            return update | {"messages": [step.reply], "invalid_streak": 0}
        update |= {"messages": step.messages, "invalid_streak": step.streak}
        if step.gave_up:
            failure = f"the agent gave up after {step.streak} invalid replies in a row; last: {step.reason}"
            update |= {"errors": [failure], "status": "failed", "finished": True}
        elif steps >= limits.max_steps:
            update |= self._step_limit(f"step limit {limits.max_steps} reached")
        return update

    @staticmethod
    def _step_limit(error: str) -> dict[str, Any]:
        return {"errors": [error], "status": "step_limit", "finished": True}

    # -- tools -------------------------------------------------------------------------------------

    async def tools(self, state: State, config: RunnableConfig, runtime: Any = None) -> dict[str, Any]:
        """Run read calls, prepare write calls for approval (nothing is sent), and record a finish."""
        last = state["messages"][-1]
        calls = list(last.tool_calls) if isinstance(last, AIMessage) else []
        done = await self._read(state, [c for c in calls if c["name"] in self.read_names], config)
        records: list[WriteRecord] = []
        pending = list(state.get("pending_writes") or [])
        update: dict[str, Any] = {}
        for call in calls:
            name = call["name"]
            if name in self.read_names:
                continue
            if name in self.write_names:
                proposed = await self._propose(state, call, done)
                if isinstance(proposed, PreparedWrite):
                    pending.append(proposed.model_dump(mode="json"))
                elif proposed is not None:
                    records.append(proposed)
            elif name == FINISH_TASK_TOOL:
                update |= _finish(call, done)
            else:
                text = UNKNOWN_TOOL_TEMPLATE.format(tool=name, tools=", ".join(self.tool_names))
                done.messages.append(
                    ToolMessage(text, name=name, tool_call_id=call["id"] or "", status="error")
                )
                done.trace.append(_event("tool", name, error="unknown tool"))

        max_steps = self.limits.of(runtime).max_steps
        if not update.get("finished") and state.get("steps", 0) >= max_steps:
            update |= self._step_limit(f"step limit {max_steps} reached")
        return update | {
            "messages": done.messages,
            "trace": done.trace,
            "errors": [*done.errors, *update.get("errors", [])],
            "writes": records,
            "pending_writes": pending,
        }

    async def _read(self, state: State, reads: list[ToolCall], config: RunnableConfig) -> ToolRound:
        """Run the read calls through the guarded tool node (the other calls hidden from it)."""
        if not reads or self.tool_node is None:
            return ToolRound()
        view = {**state, "messages": [*state["messages"][:-1], AIMessage(content="", tool_calls=reads)]}
        output = await self.tool_node.ainvoke(view, config)
        return read_tool_round(output["messages"], reads, lambda m: f"{len(m.text.splitlines())} lines")

    async def _propose(self, state: State, call: ToolCall, done: ToolRound) -> PreparedWrite | WriteRecord:
        """A write call prepared for approval (nothing is sent), or the record of its bad arguments."""
        name, call_id = call["name"], call["id"] or ""
        try:
            write = prepare_write(
                name,
                call["args"],
                patient_id=state.get("patient_id"),
                run_id=state.get("run_id") or "run",
                step=state.get("steps", 0),
                tool_call_id=call_id,
                now=state.get("now"),
            )
            await self.writer.check_references(write)
        except WriteArgumentsError as exc:
            text = f"Bad arguments for tool {name}: {exc.detail}\nNothing was written; fix and retry."
            done.messages.append(ToolMessage(text, name=name, tool_call_id=call_id, status="error"))
            done.trace.append(
                _event("write", name, args=dict(call["args"]), error=f"bad arguments: {exc.detail}")
            )
            return _record(call_id, name, "bad_arguments", errors=[exc.detail])
        summary = f"proposed {write.resource_type} for Patient/{write.patient_id}"
        done.trace.append(_event("write", name, args=dict(call["args"]), summary=summary))
        done.trace += [_event("check", "patient_scope", summary=note) for note in write.notes]
        return write

    # -- approve -----------------------------------------------------------------------------------

    async def approve(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        """Decide the first pending write: interrupt for a reviewer, or apply the explicit auto-approve."""
        pending = list(state.get("pending_writes") or [])
        write = PreparedWrite.model_validate(pending[0])
        started = _now()
        decision, decided_by = self._decide(write)
        event = _event(
            "approval",
            write.tool,
            args={"tool_call_id": write.tool_call_id, "resource_type": write.resource_type},
            summary=f"{decision.action} by {decided_by}",
            started=started,
        )
        update: dict[str, Any] = {"pending_writes": pending[1:], "trace": [event]}
        if isinstance(decision, Reject):
            text = f"Write rejected by the reviewer: {decision.reason}\nNothing was written."
            record = _record(
                write.tool_call_id,
                write.tool,
                "rejected",
                write=write,
                decided_by=decided_by,
                reason=decision.reason,
            )
            return update | _not_written(write, text, record)
        if isinstance(decision, Edit):
            edited = self._edited(write, decision.resource, state)
            if isinstance(edited, str):
                text = f"Write not done: the reviewer's edit is invalid: {edited}\nNothing was written."
                event["error"] = edited
                record = _record(
                    write.tool_call_id,
                    write.tool,
                    "invalid",
                    write=write,
                    decided_by=decided_by,
                    errors=[edited],
                )
                return update | _not_written(write, text, record)
            write = edited
        return update | {"approved": {"write": write.model_dump(mode="json"), "decided_by": decided_by}}

    def _decide(self, write: PreparedWrite) -> tuple[Any, str]:
        """The decision on a write and who took it: the policy, or a reviewer asked until it parses."""
        if self.approval == "auto_approve":
            return parse_decision("approve"), AUTO_APPROVER
        error: str | None = None
        while True:
            raw = interrupt(approval_request(write, error=error))
            try:
                return parse_decision(raw), REVIEWER
            except ValueError as exc:
                error = str(exc)

    def _edited(self, write: PreparedWrite, resource: dict[str, Any], state: State) -> PreparedWrite | str:
        """The reviewer's replacement, scoped to the same patient; validation is left to the write itself."""
        if resource.get("resourceType") != write.resource_type:
            changed = resource.get("resourceType")
            return f"the edit changes resourceType from {write.resource_type} to {changed!r}"
        try:
            final, value, digest, notes = finalize_resource(
                resource, patient_id=write.patient_id, run_id=write.run_id, step=write.step, validate=False
            )
        except WriteArgumentsError as exc:
            return exc.detail
        return write.model_copy(
            update={
                "resource": final,
                "identifier_value": value,
                "content_hash": digest,
                "notes": [*write.notes, "edited by the reviewer", *notes],
            }
        )

    # -- write -------------------------------------------------------------------------------------

    async def write(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        """Execute the one approved write (conditional create); report the outcome to the agent."""
        approved = state.get("approved") or {}
        write = PreparedWrite.model_validate(approved["write"])
        decided_by = str(approved.get("decided_by") or REVIEWER)
        started = _now()
        t0 = time.perf_counter()
        outcome = await self.writer.execute(write)
        elapsed = (time.perf_counter() - t0) * 1000
        text = _outcome_text(write, outcome, decided_by)
        message = ToolMessage(
            text,
            name=write.tool,
            tool_call_id=write.tool_call_id,
            status="success" if outcome.written else "error",
        )
        event = _event(
            "write",
            write.tool,
            args={"identifier": write.if_none_exist},
            summary=f"{outcome.status} {outcome.reference or write.resource_type}",
            started=started,
            duration_ms=elapsed,
            error="; ".join(outcome.errors) or None,
        )
        update: dict[str, Any] = {
            "approved": None,
            "messages": [message],
            "trace": [event],
            "writes": [
                _record(
                    write.tool_call_id,
                    write.tool,
                    outcome.status,
                    write=write,
                    reference=outcome.reference,
                    decided_by=decided_by,
                    errors=outcome.errors,
                )
            ],
        }
        if outcome.status == "failed":
            update["errors"] = [f"{write.tool} failed: {'; '.join(outcome.errors)}"]
        return update


def _patient_label(patient_id: str | None) -> str | None:
    return f"Patient/{patient_id}" if patient_id else None
