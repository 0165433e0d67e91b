"""The workflow registry: each name the API accepts, how to build its graph, and how to read its result.

A workflow's graph is built once per process (model, tools and checkpointer injected) and serves every
run of it; a run is one thread of that graph. Plugins add workflows: `CLINICFLOW_API_PLUGINS=pkg.mod:fn`
calls `fn(registry)` at startup.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, field_validator

from clinicflow.api.config import ApiSettings
from clinicflow.fhir import FhirClient, FhirError, FhirNotFoundError

__all__ = [
    "PATIENT_ID_PATTERN",
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
    "default_registry",
    "ehr_qa_workflow",
    "ehr_task_workflow",
    "encounter_workflow",
    "jsonable",
    "load_plugins",
]

# FHIR_ID without its look-ahead (JSON Schema and pydantic's regex engine have none): at least one
# character that is not a dot, so `.` and `..` never reach a FHIR URL; the length comes from max_length.
PATIENT_ID_PATTERN = r"^[A-Za-z0-9\-.]*[A-Za-z0-9\-][A-Za-z0-9\-.]*$"
PatientId = Annotated[str, Field(min_length=1, max_length=64, pattern=PATIENT_ID_PATTERN)]
"""A FHIR patient id: 1-64 letters, digits, `-` and `.`, not dots alone."""


def bounded_json(max_chars: int) -> AfterValidator:
    """A validator bounding a JSON value by its size written as JSON."""

    def check(value: Any) -> Any:
        size = len(json.dumps(value, ensure_ascii=False))
        if size > max_chars:
            raise ValueError(f"is {size} characters as JSON; at most {max_chars} are accepted")
        return value

    return AfterValidator(check)


CASE_SECTION_MAX_CHARS = 32_000
CaseSection = Annotated[
    str | dict[str, JsonValue],
    bounded_json(CASE_SECTION_MAX_CHARS),
    Field(
        description=f"Text, or an object of findings; at most {CASE_SECTION_MAX_CHARS} characters as JSON."
    ),
]
"""One section of an encounter case (what one role knows): AgentClinic's objects or plain text."""


class UnknownWorkflowError(KeyError):
    """No workflow is registered under this name."""


class WorkflowInputError(ValueError):
    """The input cannot start this workflow (e.g. the patient does not exist); the message says why."""


class PatientNotFoundError(WorkflowInputError):
    """The FHIR server has no patient of the input's id."""


class PluginError(RuntimeError):
    """A configured plugin hook could not be imported or failed."""


@dataclass
class WorkflowDeps:
    """What a workflow's graph is built from: shared by every workflow of the process."""

    settings: ApiSettings
    fhir: FhirClient | None
    checkpointer: BaseCheckpointSaver[Any]
    load_model: Callable[[], BaseChatModel]
    _model: BaseChatModel | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def model(self) -> BaseChatModel:
        """The chat model, loaded once (in a thread: a local model loads its weights)."""
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(self.load_model)
            return self._model

    def require_fhir(self) -> FhirClient:
        """The FHIR client; `WorkflowInputError` when the service has no FHIR server."""
        if self.fhir is None:
            raise WorkflowInputError("this workflow needs a FHIR server (CLINICFLOW_FHIR_URL)")
        return self.fhir


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of graph state values (messages and other objects become their JSON form)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return str(value)


def _patient_of(data: BaseModel) -> str | None:
    value = getattr(data, "patient_id", None)
    return value if isinstance(value, str) else None


def _default_result(run_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return jsonable({k: v for k, v in values.items() if k != "messages"})


@dataclass(frozen=True)
class Workflow:
    """One registered workflow."""

    name: str
    description: str
    input_model: type[BaseModel]
    build: Callable[[WorkflowDeps], Awaitable[Pregel]]
    writes: bool = False
    initial_state: Callable[[BaseModel], dict[str, Any]] = lambda data: data.model_dump()
    result: Callable[[str, Mapping[str, Any]], dict[str, Any]] = _default_result
    patient_id: Callable[[BaseModel], str | None] = _patient_of
    check: Callable[[WorkflowDeps, BaseModel], Awaitable[None]] | None = None
    checkpoint_types: tuple[tuple[str, str], ...] = ()

    def describe(self) -> dict[str, Any]:
        """Name, description, whether it writes, and the JSON schema of its input."""
        return {
            "name": self.name,
            "description": self.description,
            "writes": self.writes,
            "input_schema": self.input_model.model_json_schema(),
        }


class WorkflowRegistry:
    """Workflows by name, and their graphs, built once on first use."""

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}
        self._graphs: dict[str, Pregel] = {}
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

    async def graph(self, name: str, deps: WorkflowDeps) -> Pregel:
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


# -- EHR question answering -------------------------------------------------------------------------


class EhrQaInput(BaseModel):
    """Input of `ehr_qa`: one question about one patient."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"question": "What was the most recent HbA1c?", "patient_id": "example-patient"}]
        },
    )

    question: str = Field(min_length=1, max_length=4000, description="The question, in plain language.")
    patient_id: PatientId = Field(description="FHIR id of the patient in context.")


async def _build_ehr_qa(deps: WorkflowDeps) -> Pregel:
    from clinicflow.graphs.ehr_qa import build_ehr_qa_graph
    from clinicflow.tools import make_fhir_tools

    tools = make_fhir_tools(
        deps.require_fhir(),
        token_budget=deps.settings.evidence_token_budget,
        manifest_budget=deps.settings.manifest_token_budget,
    )
    return build_ehr_qa_graph(
        await deps.model(), tools, checkpointer=deps.checkpointer, max_steps=deps.settings.max_steps
    )


def _ehr_qa_initial(data: BaseModel) -> dict[str, Any]:
    assert isinstance(data, EhrQaInput)
    return {"question": data.question.strip(), "patient_id": data.patient_id}


def _ehr_qa_result(run_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "question",
        "patient_id",
        "answer",
        "citations",
        "status",
        "evidence",
        "facts",
        "errors",
        "steps",
        "trace",
    )
    out = jsonable({k: values.get(k) for k in keys})
    out["status"] = out["status"] or "failed"
    for key in ("citations", "evidence", "facts", "errors", "trace"):
        out[key] = out[key] or []
    return dict(out)


async def check_patient_exists(deps: WorkflowDeps, data: BaseModel) -> None:
    """Refuse a run about a patient the FHIR server does not have, before any model call."""
    patient_id = _patient_of(data)
    if patient_id is None:
        return
    try:
        await deps.require_fhir().read("Patient", patient_id)
    except FhirNotFoundError:
        raise PatientNotFoundError(f"patient {patient_id!r} not found on the FHIR server") from None
    except (FhirError, ValueError) as exc:
        raise WorkflowInputError(f"cannot check patient {patient_id!r}: {exc}") from None


def ehr_qa_workflow() -> Workflow:
    """EHR question answering: plan, retrieve, extract and answer with citations; reads only."""
    return Workflow(
        name="ehr_qa",
        description="Answer one question about one patient's FHIR record, citing the resources used.",
        input_model=EhrQaInput,
        build=_build_ehr_qa,
        writes=False,
        initial_state=_ehr_qa_initial,
        result=_ehr_qa_result,
        patient_id=_patient_of,
        check=check_patient_exists,
    )


# -- EHR tasks with approval-gated writes -----------------------------------------------------------


class EhrTaskInput(BaseModel):
    """Input of `ehr_task`: an instruction about the patient in context, which may lead to writes."""

    model_config = ConfigDict(extra="forbid")

    instruction: str = Field(min_length=1, max_length=4000, description="What to do, in plain language.")
    patient_id: PatientId = Field(description="FHIR id of the patient in context.")
    context: str = Field("", max_length=8000, description="Task context, e.g. codes and the current time.")
    now: str | None = Field(
        None, max_length=40, description="Current time, ISO 8601 (default: from context)."
    )
    patient_label: str | None = Field(
        None, max_length=200, description="How to name the patient to the model."
    )

    @field_validator("now")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is not None:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value


async def _build_ehr_task(deps: WorkflowDeps) -> Pregel:
    from clinicflow.graphs.ehr_task import build_ehr_task_graph
    from clinicflow.tools import make_fhir_tools
    from clinicflow.tools.write_tools import FhirWriter

    client = deps.require_fhir()
    return build_ehr_task_graph(
        await deps.model(),
        make_fhir_tools(
            client,
            token_budget=deps.settings.evidence_token_budget,
            manifest_budget=deps.settings.manifest_token_budget,
        ),
        FhirWriter(client),
        approval="require",
        checkpointer=deps.checkpointer,
        max_steps=deps.settings.max_steps,
    )


def _ehr_task_initial(data: BaseModel) -> dict[str, Any]:
    from clinicflow.agents.ehr_task import current_time_from_context

    assert isinstance(data, EhrTaskInput)
    now = (
        data.now or current_time_from_context(data.context) or datetime.now(UTC).isoformat(timespec="seconds")
    )
    return {
        "instruction": data.instruction.strip(),
        "context": data.context,
        "now": now,
        "patient_id": data.patient_id,
        "patient_label": data.patient_label,
    }


def _ehr_task_result(run_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "instruction",
        "patient_id",
        "now",
        "status",
        "answers",
        "summary",
        "writes",
        "errors",
        "steps",
        "trace",
    )
    out: dict[str, Any] = jsonable({k: values.get(k) for k in keys})
    for key in ("answers", "writes", "errors", "trace"):
        out[key] = out[key] or []
    written = [w["reference"] for w in out["writes"] if w.get("reference")]
    out["answer"] = out.get("summary") or ""
    out["citations"] = list(dict.fromkeys([*_references(out["answer"]), *written]))
    return out


def _references(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"\[([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})\]", text or "")]


def ehr_task_workflow() -> Workflow:
    """EHR tasks: query the record, then propose writes that each wait for a person's approval."""
    return Workflow(
        name="ehr_task",
        description="Carry out an instruction on one patient's record; every write waits for approval.",
        input_model=EhrTaskInput,
        build=_build_ehr_task,
        writes=True,
        initial_state=_ehr_task_initial,
        result=_ehr_task_result,
        check=check_patient_exists,
    )


# -- simulated encounters (AgentClinic) ------------------------------------------------------------


class EncounterInput(BaseModel):
    """Input of `encounter`: one case, split into what each role may see."""

    model_config = ConfigDict(extra="forbid")

    case_id: str = Field(min_length=1, max_length=200)
    objective: str = Field(min_length=1, max_length=4000, description="What the doctor is told.")
    patient_info: CaseSection = Field(description="What the patient actor knows (AgentClinic Patient_Actor).")
    exam_findings: CaseSection = Field(description="Physical examination findings, for the measurement role.")
    test_results: CaseSection = Field(description="Test results, for the measurement role.")
    correct_diagnosis: str = Field(min_length=1, max_length=1000, description="For the moderator only.")
    patient_id: PatientId | None = Field(None, description="FHIR patient, if any.")


async def _build_encounter(deps: WorkflowDeps) -> Pregel:
    from clinicflow.graphs.encounter import RoleModels, build_encounter_graph

    model = await deps.model()
    return build_encounter_graph(RoleModels(model, model, model, model), checkpointer=deps.checkpointer)


def _encounter_initial(data: BaseModel) -> dict[str, Any]:
    from clinicflow.graphs.encounter import EncounterCase

    assert isinstance(data, EncounterInput)
    case = EncounterCase(
        case_id=data.case_id,
        objective=data.objective,
        patient_info=data.patient_info,
        exam_findings=data.exam_findings,
        test_results=data.test_results,
        correct_diagnosis=data.correct_diagnosis,
        patient_id=data.patient_id,
    )
    return {"case": case, "patient_id": data.patient_id}


def _encounter_result(run_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("diagnosis", "verdict", "moderator_reply", "turn", "tests_requested", "finished", "transcript")
    out: dict[str, Any] = jsonable({k: values.get(k) for k in keys})
    out["correct"] = bool(out.pop("verdict"))
    out["turns"] = out.pop("turn") or 0
    return out


def encounter_workflow() -> Workflow:
    """Simulated patient encounters (AgentClinic): doctor, patient, measurement and moderator roles."""
    return Workflow(
        name="encounter",
        description="Simulate one patient encounter: the doctor asks, tests, and gives a diagnosis.",
        input_model=EncounterInput,
        build=_build_encounter,
        initial_state=_encounter_initial,
        result=_encounter_result,
        checkpoint_types=(("clinicflow.graphs.encounter.state", "EncounterCase"),),
    )


def default_registry() -> WorkflowRegistry:
    """The built-in workflows: ehr_qa, ehr_task and encounter."""
    registry = WorkflowRegistry()
    registry.register(ehr_qa_workflow())
    registry.register(ehr_task_workflow())
    registry.register(encounter_workflow())
    return registry
