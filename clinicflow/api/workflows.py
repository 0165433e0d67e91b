"""The workflow registry: each name the API accepts, how to build its graph, and how to read its result.

Each workflow is a descriptor beside its graph (`graphs/<name>/workflow.py`); adding one is one line in
`WORKFLOWS`. A workflow's graph is built once per process (model, tools and checkpointer injected) and
serves every run of it; a run is one thread of that graph. Plugins add workflows:
`CLINICFLOW_API_PLUGINS=pkg.mod:fn` calls `fn(registry)` at startup.
"""

from __future__ import annotations

import asyncio
import importlib
import re

from clinicflow.graphs.active_medications.workflow import ACTIVE_MEDICATIONS
from clinicflow.graphs.ehr_qa.workflow import EHR_QA, EhrQaInput
from clinicflow.graphs.ehr_task.workflow import EHR_TASK, EhrTaskInput
from clinicflow.graphs.encounter.workflow import (
    CASE_SECTION_MAX_CHARS,
    ENCOUNTER,
    CaseSection,
    EncounterInput,
)
from clinicflow.graphs.inputs import PATIENT_ID_PATTERN, PatientId, bounded_json
from clinicflow.graphs.workflow import (
    Graph,
    PatientNotFoundError,
    Workflow,
    WorkflowDeps,
    WorkflowInputError,
    check_patient_exists,
    jsonable,
)

__all__ = [
    "CASE_SECTION_MAX_CHARS",
    "EXAMPLES",
    "PATIENT_ID_PATTERN",
    "WORKFLOWS",
    "CaseSection",
    "EhrQaInput",
    "EhrTaskInput",
    "EncounterInput",
    "PatientId",
    "PatientNotFoundError",
    "PluginError",
    "UnknownWorkflowError",
    "Workflow",
    "WorkflowDeps",
    "WorkflowInputError",
    "WorkflowRegistry",
    "bounded_json",
    "check_patient_exists",
    "default_registry",
    "ehr_qa_workflow",
    "ehr_task_workflow",
    "encounter_workflow",
    "jsonable",
    "load_plugins",
    "register_examples",
]

WORKFLOWS: tuple[Workflow, ...] = (EHR_QA, EHR_TASK, ENCOUNTER)
"""The built-in workflows, one line each."""

EXAMPLES: tuple[Workflow, ...] = (ACTIVE_MEDICATIONS,)
"""Example workflows (docs/workflows.md): in the CLI, and in the API with the plugin hook
`CLINICFLOW_API_PLUGINS=clinicflow.api.workflows:register_examples`."""


class UnknownWorkflowError(KeyError):
    """No workflow is registered under this name."""


class PluginError(RuntimeError):
    """A configured plugin hook could not be imported or failed."""


class WorkflowRegistry:
    """Workflows by name, and their graphs, built once on first use."""

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}
        self._graphs: dict[str, Graph] = {}
        self._lock = asyncio.Lock()

    def register(self, workflow: Workflow, *, replace: bool = False) -> None:
        """Add a workflow; a second one of the same name needs `replace=True`."""
        if not re.match(r"^[a-z][a-z0-9_]{0,63}$", workflow.name):
            raise ValueError(f"workflow names are lowercase identifiers, got {workflow.name!r}")
        if workflow.name in self._workflows and not replace:
            raise ValueError(f"workflow {workflow.name!r} is already registered")
        self._workflows[workflow.name] = workflow
        self._graphs.pop(workflow.name, None)

    def get(self, name: str) -> Workflow:
        """The workflow, or `UnknownWorkflowError` naming the registered ones."""
        try:
            return self._workflows[name]
        except KeyError:
            raise UnknownWorkflowError(
                f"unknown workflow {name!r}; registered: {', '.join(self.names()) or 'none'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._workflows)

    def checkpoint_types(self) -> list[tuple[str, str]]:
        """(module, class) of the objects the workflows keep in graph state, allowed in checkpoints."""
        return sorted({t for w in self._workflows.values() for t in w.checkpoint_types})

    def __contains__(self, name: object) -> bool:
        return name in self._workflows

    async def graph(self, name: str, deps: WorkflowDeps) -> Graph:
        """The compiled graph of a workflow, built on first use."""
        async with self._lock:
            if name not in self._graphs:
                self._graphs[name] = await self.get(name).build(deps)
            return self._graphs[name]


def load_plugins(registry: WorkflowRegistry, specs: list[str]) -> None:
    """Call each `module:function` hook with the registry."""
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        try:
            hook = getattr(importlib.import_module(module_name), attr or "register")
            hook(registry)
        except Exception as exc:
            raise PluginError(f"plugin {spec!r} failed: {type(exc).__name__}: {exc}") from exc


def ehr_qa_workflow() -> Workflow:
    """EHR question answering: plan, retrieve, extract and answer with citations; reads only."""
    return EHR_QA


def ehr_task_workflow() -> Workflow:
    """EHR tasks: query the record, then propose writes that each wait for a person's approval."""
    return EHR_TASK


def encounter_workflow() -> Workflow:
    """Simulated patient encounters (AgentClinic): doctor, patient, measurement and moderator roles."""
    return ENCOUNTER


def register_examples(registry: WorkflowRegistry) -> None:
    """Plugin hook: add the example workflows."""
    for workflow in EXAMPLES:
        registry.register(workflow)


def default_registry() -> WorkflowRegistry:
    """The built-in workflows: ehr_qa, ehr_task and encounter."""
    registry = WorkflowRegistry()
    for workflow in WORKFLOWS:
        registry.register(workflow)
    return registry
