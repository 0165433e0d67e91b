"""What a workflow is, as the runner, the API and the CLI see it: a small descriptor beside each graph.

A descriptor names the workflow, its Input model (what a caller sends), how its graph is built from the
shared dependencies (model, FHIR client, checkpointer, settings), the initial state an input starts, and
how a finished state reads as a result: a JSON dict for the API (`result`) and a typed model for Python
callers (`output`). The runner (`graphs.runner`) runs, resumes and reports errors for any of them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel
from pydantic import BaseModel

from clinicflow.fhir import FhirClient, FhirError, FhirNotFoundError
from clinicflow.graphs.hidden_args import RUNTIME_ARGS
from clinicflow.settings import Settings
from clinicflow.tools import make_fhir_tools

__all__ = [
    "Graph",
    "PatientNotFoundError",
    "RunErrors",
    "Workflow",
    "WorkflowDeps",
    "WorkflowInputError",
    "check_patient_exists",
    "jsonable",
]


Graph = Pregel[Any, Any, Any, Any]
"""A compiled workflow graph, whatever its state, run context, input and output schemas."""


class WorkflowInputError(ValueError):
    """The input cannot start this workflow (e.g. the patient does not exist); the message says why."""


class PatientNotFoundError(WorkflowInputError):
    """The FHIR server has no patient of the input's id."""


@dataclass
class WorkflowDeps:
    """What a workflow's graph is built from: shared by every workflow of the process."""

    settings: Settings
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

    def record_tools(self) -> list[BaseTool]:
        """The patient-scoped record tools on the FHIR client, within the settings' token budgets."""
        return make_fhir_tools(
            self.require_fhir(),
            token_budget=self.settings.evidence_token_budget,
            manifest_budget=self.settings.manifest_token_budget,
        )


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of graph state values (messages and other objects become their JSON form)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)


def _patient_of(data: BaseModel) -> str | None:
    value = getattr(data, "patient_id", None)
    return value if isinstance(value, str) else None


def _default_result(run_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return jsonable({k: v for k, v in values.items() if k != "messages"})


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


@dataclass(frozen=True)
class RunErrors:
    """How the runner reports a workflow's errors: `input` takes a message, `run` (thread id, cause).
    With `run=None` an exception inside the graph propagates as it is."""

    input: Callable[[str], Exception] = WorkflowInputError
    run: Callable[[str, BaseException], Exception] | None = None


@dataclass(frozen=True)
class Workflow:
    """One workflow: its name and Input model, its graph factory, and how its states read as results.

    `held` are the state keys a thread keeps for good (a run under a known thread id must bring the
    same values); `subject` names them in the error when it does not. `hidden_args` are the tool
    arguments never shown in events or audit rows (they come from the graph, not the model).
    """

    name: str
    description: str
    input_model: type[BaseModel]
    build: Callable[[WorkflowDeps], Awaitable[Graph]]
    writes: bool = False
    initial_state: Callable[[BaseModel], dict[str, Any]] = lambda data: data.model_dump()
    result: Callable[[str, Mapping[str, Any]], dict[str, Any]] = _default_result
    patient_id: Callable[[BaseModel], str | None] = _patient_of
    check: Callable[[WorkflowDeps, BaseModel], Awaitable[None]] | None = None
    checkpoint_types: tuple[tuple[str, str], ...] = ()
    hidden_args: frozenset[str] = RUNTIME_ARGS
    output: Callable[[str, Mapping[str, Any], dict[str, Any] | None], Any] | None = None
    """The typed result of a run (thread id, state values, the approval it awaits); default: `result`."""
    errors: RunErrors = RunErrors()
    held: tuple[str, ...] = ()
    subject: str = "input"

    def describe(self) -> dict[str, Any]:
        """Name, description, whether it writes, and the JSON schema of its input."""
        return {
            "name": self.name,
            "description": self.description,
            "writes": self.writes,
            "input_schema": self.input_model.model_json_schema(),
        }
