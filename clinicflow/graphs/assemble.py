"""Compiling a workflow's graph from its parts: nodes, plain edges, routers and a step bound."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

__all__ = ["assemble"]


def assemble(
    builder: StateGraph[Any, Any, Any, Any],
    *,
    nodes: Mapping[str, Any],
    edges: Sequence[tuple[str, str]] = (),
    routes: Mapping[str, Callable[..., Any]] | None = None,
    name: str,
    checkpointer: BaseCheckpointSaver[str] | None,
    recursion_limit: int,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Add the nodes, edges and routers (node -> router) to `builder`, compile it under `name` and bound
    the supersteps of a run (`graphs.limits`: the nodes end a run before it reaches that bound)."""
    for node, action in nodes.items():
        builder.add_node(node, action)
    for start, end in edges:
        builder.add_edge(start, end)
    for node, route in (routes or {}).items():
        builder.add_conditional_edges(node, route)
    graph = builder.compile(checkpointer=checkpointer, name=name)
    return graph.with_config(recursion_limit=recursion_limit)
