"""The AgentClinic encounter as a StateGraph: doctor <-> patient / measurement, then the moderator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode

from clinicflow.agents.encounter import DoctorAgent, MeasurementAgent, ModeratorAgent, PatientAgent
from clinicflow.graphs.encounter.nodes import EncounterNodes, route_after_doctor
from clinicflow.graphs.encounter.state import EncounterCase, Finish, InputState, State, Utterance

__all__ = ["EncounterOutcome", "RoleModels", "build_encounter_graph", "run_encounter"]


@dataclass(frozen=True)
class RoleModels:
    """One chat model per role; the same object may serve several roles."""

    doctor: BaseChatModel
    patient: BaseChatModel
    measurement: BaseChatModel
    moderator: BaseChatModel


def build_encounter_graph(
    models: RoleModels,
    *,
    max_turns: int = 20,
    doctor_bias: str | None = None,
    patient_bias: str | None = None,
    doctor_tools: Sequence[BaseTool] = (),
    max_tool_calls: int = 3,
    checkpointer: Any = None,
) -> CompiledStateGraph[State, None, InputState, State]:
    """Compile the encounter graph once; it serves any number of concurrent cases.

    `doctor_tools` is a variant beyond the original protocol: the doctor may call them (at most
    `max_tool_calls` rounds per turn) before replying. Raises UnknownBiasError for an unknown bias.
    """
    if max_turns < 1:
        raise ValueError("max_turns must be at least 1")
    nodes = EncounterNodes(
        doctor_agent=DoctorAgent(
            models.doctor, max_turns=max_turns, bias=doctor_bias, tools=tuple(doctor_tools)
        ),
        patient_agent=PatientAgent(models.patient, bias=patient_bias),
        measurement_agent=MeasurementAgent(models.measurement),
        moderator_agent=ModeratorAgent(models.moderator),
        max_turns=max_turns,
        max_tool_calls=max_tool_calls,
    )
    graph = StateGraph(State, input_schema=InputState)
    graph.add_node("doctor", nodes.doctor)
    graph.add_node("patient", nodes.patient)
    graph.add_node("measurement", nodes.measurement)
    graph.add_node("moderator", nodes.moderator)
    routes = ["moderator", "measurement", "patient"]
    if doctor_tools:
        graph.add_node("doctor_tools", ToolNode(list(doctor_tools), messages_key="doctor_scratch"))
        graph.add_edge("doctor_tools", "doctor")
        routes.insert(0, "doctor_tools")

    graph.add_edge(START, "doctor")
    graph.add_conditional_edges("doctor", route_after_doctor, routes)
    graph.add_edge("patient", "doctor")
    graph.add_edge("measurement", "doctor")
    graph.add_edge("moderator", END)

    limit = max_turns * (2 + 2 * (max_tool_calls if doctor_tools else 0)) + 5
    return graph.compile(checkpointer=checkpointer, name="encounter").with_config(recursion_limit=limit)


@dataclass(frozen=True)
class EncounterOutcome:
    """The result of one encounter, ready to be written as a results line and a transcript."""

    case_id: str
    correct_diagnosis: str
    diagnosis: str | None
    correct: bool
    moderator_reply: str | None
    turns: int
    tests_requested: list[str]
    finished: Finish
    transcript: list[Utterance] = field(default_factory=list)


async def run_encounter(
    graph: CompiledStateGraph[State, None, InputState, State],
    case: EncounterCase,
    config: dict[str, Any] | None = None,
) -> EncounterOutcome:
    """Run one case through a compiled encounter graph."""
    inputs: InputState = {"case": case, "patient_id": case.patient_id}
    state: dict[str, Any] = await graph.ainvoke(inputs, config=cast("RunnableConfig | None", config))
    return EncounterOutcome(
        case_id=case.case_id,
        correct_diagnosis=case.correct_diagnosis,
        diagnosis=state.get("diagnosis"),
        correct=bool(state.get("verdict")),
        moderator_reply=state.get("moderator_reply"),
        turns=state.get("turn", 0),
        tests_requested=list(state.get("tests_requested") or []),
        finished=state.get("finished", "turn_limit"),
        transcript=list(state.get("transcript") or []),
    )
