"""Run an AgentClinic eval from a configuration: load scenarios, models and (optionally) doctor tools."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool

from clinicflow.agents.encounter import get_protocol, validate_bias
from clinicflow.evals.agentclinic.config import AgentClinicConfig
from clinicflow.evals.agentclinic.models import ROLES, load_role_models, parse_model_spec
from clinicflow.evals.agentclinic.runner import RunSummary, run_agentclinic
from clinicflow.evals.agentclinic.scenarios import ScenarioSet, load_scenarios
from clinicflow.graphs.encounter import EncounterCase
from clinicflow.settings import Settings

__all__ = ["GUIDELINE_INDEX", "DoctorToolsError", "EvalRun", "doctor_tool_sets", "run_from_config"]


class DoctorToolsError(RuntimeError):
    """`--doctor-tools` was asked for but no tool can be provided."""


@dataclass
class EvalRun:
    """A finished eval: the scenario set (with skipped lines), the run summary, and notes for the user."""

    scenarios: ScenarioSet
    summary: RunSummary
    notes: list[str] = field(default_factory=list)


GUIDELINE_INDEX = "guidelines.sqlite"
"""The guideline index the doctor's tools search, under the cache dir (`clinicflow guidelines index`)."""


async def doctor_tool_sets(
    settings: Settings, cases: Sequence[EncounterCase], stack: AsyncExitStack
) -> tuple[list[BaseTool], list[BaseTool], list[str]]:
    """Guideline search for every case, FHIR record tools for cases linked to a patient, and notes.

    The FHIR client is closed with `stack`. Raises DoctorToolsError when neither can be provided.
    """
    notes: list[str] = []
    guideline: list[BaseTool] = []
    index = settings.cache_dir / GUIDELINE_INDEX
    if index.is_file():
        from clinicflow.tools.guidelines import make_guideline_tool

        guideline = [make_guideline_tool(index)]
    else:
        notes.append(f"no guideline index at {index} (build one with `clinicflow guidelines index DIR`)")
    record: list[BaseTool] = []
    if any(case.patient_id for case in cases):
        if not settings.fhir_url:
            notes.append(
                "cases are linked to FHIR patients but CLINICFLOW_FHIR_URL is not set: no record tools"
            )
        else:
            from clinicflow.fhir import FhirClient
            from clinicflow.tools import make_fhir_tools

            client = await stack.enter_async_context(
                FhirClient(
                    settings.fhir_url,
                    token=settings.fhir_token,
                    timeout=settings.fhir_timeout_s,
                    retries=settings.fhir_retries,
                )
            )
            record = make_fhir_tools(client)
    if not guideline and not record:
        raise DoctorToolsError("--doctor-tools: no tool is available (" + "; ".join(notes) + ")")
    return guideline, record, notes


async def run_from_config(
    config: AgentClinicConfig,
    settings: Settings,
    *,
    on_case: Callable[[dict[str, Any]], None] | None = None,
    on_loaded: Callable[[ScenarioSet, list[str]], None] | None = None,
    loader: Callable[..., BaseChatModel] | None = None,
) -> EvalRun:
    """Validate everything cheap first (scenarios, protocol options, biases, model specs), then load
    models and run.

    `on_loaded` sees the scenarios (with skipped lines) and tool notes before models load;
    `on_case` sees each results line as its case finishes.
    """
    scenarios = load_scenarios(config.scenarios, limit=config.limit)
    get_protocol(config.protocol).check_options(
        doctor_tools=config.doctor_tools, image_request=config.image_request
    )
    validate_bias(config.doctor_bias, "doctor")
    validate_bias(config.patient_bias, "patient")
    specs = {role: parse_model_spec(getattr(config, role)) for role in ROLES}
    async with AsyncExitStack() as stack:
        notes: list[str] = []
        guideline: list[BaseTool] = []
        record: list[BaseTool] = []
        if config.doctor_tools:
            guideline, record, notes = await doctor_tool_sets(settings, scenarios.cases, stack)
        if on_loaded is not None:
            on_loaded(scenarios, notes)
        models, by_role = await asyncio.to_thread(load_role_models, settings, specs, loader=loader)
        summary = await run_agentclinic(
            scenarios.cases,
            models,
            config.out,
            run_info={
                "scenarios": str(config.scenarios),
                "scenarios_sha256": scenarios.sha256,
                "models": by_role,
            },
            protocol=config.protocol,
            turns=config.turns,
            doctor_bias=config.doctor_bias,
            patient_bias=config.patient_bias,
            image_request=config.image_request,
            max_new_tokens=config.max_new_tokens,
            concurrency=config.concurrency,
            doctor_tools=guideline,
            record_tools=record,
            on_case=on_case,
        )
    return EvalRun(scenarios, summary, notes)
