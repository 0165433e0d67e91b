"""The doctor-tools variant's tool sets: guideline search from the cache dir, FHIR tools for linked cases."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool

from clinicflow.evals.agentclinic import SHIPPED_SCENARIOS, DoctorToolsError, load_scenarios
from clinicflow.evals.agentclinic.run import doctor_tool_sets
from clinicflow.graphs.encounter import EncounterCase
from clinicflow.settings import Settings

CASES = load_scenarios(SHIPPED_SCENARIOS / "clinicflow_osce.jsonl").cases


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(cache_dir=tmp_path, **values)  # type: ignore[arg-type]


async def test_no_tool_available_is_a_clear_error(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        with pytest.raises(DoctorToolsError, match=r"no guideline index at .*guidelines\.sqlite"):
            await doctor_tool_sets(_settings(tmp_path), CASES, stack)


async def test_linked_cases_get_patient_scoped_record_tools(tmp_path: Path) -> None:
    linked = [*CASES, EncounterCase(**{**CASES[0].__dict__, "case_id": "linked", "patient_id": "p1"})]
    async with AsyncExitStack() as stack:
        with pytest.raises(DoctorToolsError, match="CLINICFLOW_FHIR_URL is not set"):
            await doctor_tool_sets(_settings(tmp_path), linked, stack)
        settings = _settings(tmp_path, fhir_url="http://127.0.0.1:9/fhir")
        guideline, record, notes = await doctor_tool_sets(settings, linked, stack)
    assert guideline == []
    assert sorted(t.name for t in record) == ["record_manifest", "search_record"]
    assert all("patient_id" not in str(convert_to_openai_tool(t)) for t in record)
    assert any("guideline index" in note for note in notes)
