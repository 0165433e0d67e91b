"""The EHR task graph: agent -> tools -> (approve -> write)* -> agent ... -> END.

START -> agent -> tools -> agent ...                       (reads only)
               -> tools -> approve -> write -> agent ...   (each write: interrupt for a decision, then create)
               -> tools -> END                              (finish_task called, or the step limit reached)
A rejected or invalid write goes back to the agent with the reason; nothing is sent for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from clinicflow.graphs.assemble import assemble
from clinicflow.graphs.ehr_task.nodes import SUPERSTEPS_PER_ROUND, EhrTaskNodes
from clinicflow.graphs.ehr_task.state import InputState, OutputState, State
from clinicflow.graphs.limits import RunLimits
from clinicflow.tools.write_tools import ApprovalPolicy, FhirWriter

__all__ = [
    "build_ehr_task_graph",
    "route_after_agent",
    "route_after_approve",
    "route_after_tools",
    "route_after_write",
]

EhrTaskGraph = CompiledStateGraph[State, RunLimits, InputState, OutputState]


def route_after_agent(state: State) -> Literal["tools", "agent", "__end__"]:
    """Run the agent's tool calls; retry an invalid reply; stop when the agent gave up."""
    messages = state.get("messages", [])
    if messages and isinstance(messages[-1], AIMessage) and messages[-1].tool_calls:
        return "tools"
    return "__end__" if state.get("finished") else "agent"


def route_after_tools(state: State) -> Literal["approve", "agent", "__end__"]:
    """Writes first wait for a decision; then back to the agent unless the task is finished."""
    if state.get("pending_writes"):
        return "approve"
    return "__end__" if state.get("finished") else "agent"


def route_after_approve(state: State) -> Literal["write", "approve", "agent", "__end__"]:
    """Execute an approved write; else decide the next pending one, or go on."""
    if state.get("approved"):
        return "write"
    return route_after_tools(state)


def route_after_write(state: State) -> Literal["approve", "agent", "__end__"]:
    """The next pending write, or back to the agent, or the end."""
    return route_after_tools(state)


def build_ehr_task_graph(
    model: BaseChatModel,
    read_tools: Sequence[BaseTool],
    writer: FhirWriter,
    *,
    write_tools: Sequence[BaseTool] | None = None,
    approval: ApprovalPolicy = "require",
    checkpointer: BaseCheckpointSaver[str] | None = None,
    max_steps: int = 8,
    max_retries: int = 2,
) -> EhrTaskGraph:
    """Compile the graph around one chat model, the caller's patient-scoped read tools and one writer.

    `approval="require"` stops at every write until `Command(resume=decision)`, and so needs a checkpointer;
    `approval="auto_approve"` is an explicit policy for evals, recorded in every run's state and audit.
    `max_steps` bounds model calls per run; `max_retries` bounds retries after an invalid reply; a run
    may pass its own as `context=RunLimits(...)` (`graphs.limits`).
    """
    limits = RunLimits(max_steps, max_retries)
    if approval == "require" and checkpointer is None:
        raise ValueError("approval='require' needs a checkpointer: a write waits for its decision there")
    nodes = EhrTaskNodes(
        model,
        read_tools,
        writer,
        write_tools=write_tools,
        approval=approval,
        limits=limits,
    )

    return assemble(
        StateGraph(State, context_schema=RunLimits, input_schema=InputState, output_schema=OutputState),
        nodes={name: getattr(nodes, name) for name in ("agent", "tools", "approve", "write")},
        edges=[(START, "agent")],
        routes={
            "agent": route_after_agent,
            "tools": route_after_tools,
            "approve": route_after_approve,
            "write": route_after_write,
        },
        name="ehr_task",
        checkpointer=checkpointer,
        recursion_limit=SUPERSTEPS_PER_ROUND * (max_steps + 1) + 8,
    )
