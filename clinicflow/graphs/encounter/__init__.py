"""Simulated patient encounters (AgentClinic): doctor, patient, measurement and moderator agents."""

from clinicflow.graphs.encounter.graph import RoleModels, build_encounter_graph
from clinicflow.graphs.encounter.nodes import route_after_doctor
from clinicflow.graphs.encounter.result import EncounterOutcome
from clinicflow.graphs.encounter.run import run_encounter
from clinicflow.graphs.encounter.state import EncounterCase, InputState, State, Utterance

__all__ = [
    "EncounterCase",
    "EncounterOutcome",
    "InputState",
    "RoleModels",
    "State",
    "Utterance",
    "build_encounter_graph",
    "route_after_doctor",
    "run_encounter",
]
