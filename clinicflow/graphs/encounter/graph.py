"""The AgentClinic encounter as a StateGraph: doctor <-> patient / measurement, then the moderator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from clinicflow.agents.encounter import (
    DEFAULT_PROTOCOL,
    EncounterProtocol,
    get_protocol,
    validate_bias,
)
from clinicflow.graphs.encounter.nodes import EncounterNodes, RoleModels, route_after_doctor
from clinicflow.graphs.encounter.state import InputState, State

__all__ = ["EncounterGraph", "RoleModels", "build_encounter_graph"]

EncounterGraph = CompiledStateGraph[State, None, InputState, State]


def build_encounter_graph(
    models: RoleModels,
    *,
    protocol: str | EncounterProtocol = DEFAULT_PROTOCOL,
    max_turns: int = 20,
    doctor_bias: str | None = None,
    patient_bias: str | None = None,
    image_request: bool = False,
    doctor_tools: Sequence[BaseTool] = (),
    max_tool_calls: int = 3,
    checkpointer: Any = None,
) -> EncounterGraph:
    """Compile the encounter graph once; it serves any number of concurrent cases.

    `protocol` (`original` or `clinicflow`) sets the prompts and the reading of replies; the models
    are used as given (`run_agentclinic` gives them the protocol's generation settings).
    `image_request` (original only): the doctor gets the case image after asking for it, not every
    turn. `doctor_tools` (clinicflow only) is a variant beyond AgentClinic: the doctor may call them,
    at most `max_tool_calls` rounds per turn, before replying. Raises ProtocolOptionError for an
    option the protocol does not have and UnknownBiasError for an unknown bias.
    """
    if max_turns < 1:
        raise ValueError("max_turns must be at least 1")
    rules = get_protocol(protocol)
    rules.check_options(doctor_tools=bool(doctor_tools), image_request=image_request)
    nodes = EncounterNodes(
        protocol=rules,
        models=models,
        max_turns=max_turns,
        doctor_bias=validate_bias(doctor_bias, "doctor"),
        patient_bias=validate_bias(patient_bias, "patient"),
        image_request=image_request,
        doctor_tools=tuple(doctor_tools),
        max_tool_calls=max_tool_calls,
    )
    graph = StateGraph(State, input_schema=InputState)
    graph.add_node("doctor", nodes.doctor)
    graph.add_node("patient", nodes.patient)
    graph.add_node("measurement", nodes.measurement)
    graph.add_node("moderator", nodes.moderator)
    routes = ["moderator", "measurement", "patient"]
    if doctor_tools:
        # Drawn as a tool node: the tools it runs are named in the graph's picture.
        tools = {"__tools": [t.name for t in doctor_tools]}
        graph.add_node("doctor_tools", nodes.run_doctor_tools, metadata=tools)
        graph.add_edge("doctor_tools", "doctor")
        routes.insert(0, "doctor_tools")

    graph.add_edge(START, "doctor")
    graph.add_conditional_edges("doctor", route_after_doctor, routes)
    graph.add_edge("patient", "doctor")
    graph.add_edge("measurement", "doctor")
    graph.add_edge("moderator", END)

    limit = max_turns * (2 + 2 * (max_tool_calls if doctor_tools else 0)) + 5
    return graph.compile(checkpointer=checkpointer, name="encounter").with_config(recursion_limit=limit)
