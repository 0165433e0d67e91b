"""The EHR question-answering graph: plan -> retrieve (looping back to plan) -> extract -> answer.

START -> plan -> retrieve -> plan ... (until the planner finishes, fails, or hits the step limit)
              -> extract -> answer -> END
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from clinicflow.graphs.assemble import assemble
from clinicflow.graphs.ehr_qa.nodes import EhrQaNodes
from clinicflow.graphs.ehr_qa.state import InputState, OutputState, State
from clinicflow.graphs.limits import RunLimits

__all__ = ["build_ehr_qa_graph", "route_after_plan", "route_after_retrieve"]

EhrQaGraph = CompiledStateGraph[State, RunLimits, InputState, OutputState]


def route_after_plan(state: State) -> Literal["retrieve", "plan", "extract"]:
    """Run the planner's tool calls; else retry an invalid reply, unless retrieval is over."""
    messages = state.get("messages", [])
    if messages and isinstance(messages[-1], AIMessage) and messages[-1].tool_calls:
        return "retrieve"
    if state.get("retrieval_done"):
        return "extract"
    return "plan"


def route_after_retrieve(state: State) -> Literal["plan", "extract"]:
    """Back to the planner until it finishes, gives up or reaches the step limit."""
    return "extract" if state.get("retrieval_done") else "plan"


def build_ehr_qa_graph(
    model: BaseChatModel,
    tools: Sequence[BaseTool],
    *,
    checkpointer: BaseCheckpointSaver[str] | None = None,
    max_steps: int = 8,
    max_retries: int = 2,
    manifest_tool: str | None = "record_manifest",
) -> EhrQaGraph:
    """Compile the graph around one chat model and one set of patient-scoped tools.

    `max_steps` bounds planner calls per run; `max_retries` bounds retries after an invalid reply; a run
    may pass its own as `context=RunLimits(...)` (`graphs.limits`).
    When a tool named `manifest_tool` is given, the first step calls it without asking the model.
    """
    limits = RunLimits(max_steps, max_retries)
    nodes = EhrQaNodes(model, tools, limits=limits, manifest_tool=manifest_tool)
    return assemble(
        StateGraph(State, context_schema=RunLimits, input_schema=InputState, output_schema=OutputState),
        nodes={name: getattr(nodes, name) for name in ("plan", "retrieve", "extract", "answer")},
        edges=[(START, "plan"), ("extract", "answer"), ("answer", END)],
        routes={"plan": route_after_plan, "retrieve": route_after_retrieve},
        name="ehr_qa",
        checkpointer=checkpointer,
        recursion_limit=2 * (max_steps + 1) + 8,
    )
