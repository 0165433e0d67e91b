"""Run one encounter case through a compiled encounter graph."""

from __future__ import annotations

from typing import Any, cast

from langchain_core.runnables import RunnableConfig

from clinicflow.graphs.encounter.graph import EncounterGraph
from clinicflow.graphs.encounter.result import EncounterOutcome
from clinicflow.graphs.encounter.state import EncounterCase, InputState
from clinicflow.graphs.encounter.workflow import ENCOUNTER
from clinicflow.graphs.runner import run_workflow

__all__ = ["run_encounter"]


async def run_encounter(
    graph: EncounterGraph, case: EncounterCase, config: dict[str, Any] | None = None
) -> EncounterOutcome:
    """Run one case through a compiled encounter graph."""
    inputs: InputState = {"case": case, "patient_id": case.patient_id}
    outcome: EncounterOutcome = await run_workflow(
        ENCOUNTER, graph, inputs, config=cast("RunnableConfig | None", config)
    )
    return outcome
