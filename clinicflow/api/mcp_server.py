"""An MCP server (Model Context Protocol, the official `mcp` SDK) over one patient's record.

`clinicflow mcp --patient ID` serves, over stdio (or streamable HTTP):
- `record_manifest`, `search_record`: the patient-scoped FHIR tools, answering in cited lines;
- `search_guidelines`: the guideline index, when it holds documents;
- `ask`: the ehr_qa workflow (answer with citations);
- `propose_task`: the ehr_task workflow up to its first write, returned as the pending approval; the
  MCP server never writes and never resumes it.

The session's patient is bound when the server starts and checked on the FHIR server; no tool takes a
patient argument, and a call that names one (`patient_id`, or any argument the tool lacks) is refused.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from clinicflow.api.config import ApiSettings
from clinicflow.fhir import FhirClient, FhirError, FhirNotFoundError
from clinicflow.tools import RecordQuery, RecordReader, ToolFailed, make_fhir_tools
from clinicflow.tools.fhir_tools import BadToolArguments, ResourceType

__all__ = [
    "McpPatientError",
    "PatientBoundServer",
    "add_record_tools",
    "build_mcp_server",
    "open_mcp_server",
]

_T = TypeVar("_T")
_ANSWER_FIELDS = {"answer", "citations", "status", "evidence", "errors"}
"""What `ask` returns of an EHR QA result."""
INSTRUCTIONS = (
    "Tools over one patient's FHIR record, bound when this server started: every answer cites "
    "[ResourceType/id]. Call record_manifest first to see what the record holds. Writes are never made "
    "here: propose_task returns the pending approval for a person to decide in clinicflow's API."
)


class McpPatientError(ValueError):
    """The patient to bind cannot be served (bad id, or not on the FHIR server)."""


class PatientBoundServer(MCPServer):
    """An MCPServer that refuses arguments a tool does not declare, so no call can name a patient.
    `patient()` is the session's patient: fixed at start (stdio) or read from the caller's token."""

    def __init__(self, patient: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.patient = patient

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            unknown = sorted(set(arguments) - set(tool.parameters.get("properties", {})))
            if unknown:
                raise ToolError(
                    f"{name} takes no argument {', '.join(map(repr, unknown))}: this session is bound to "
                    f"Patient/{self.patient()}, and no call can name another patient"
                )
        return await super().call_tool(name, arguments, context)


def add_record_tools(
    server: PatientBoundServer, reader: Callable[[], RecordReader], guidelines: BaseTool | None = None
) -> None:
    """`record_manifest`, `search_record`, and `search_guidelines` given an index: the session patient."""

    @server.tool()
    async def record_manifest() -> str:
        """Overview of the patient's record: resource types with counts and date spans, and the most
        frequent codes per type. Call it first to choose what to search."""
        try:
            return await reader().manifest_text(server.patient())
        except (FhirError, ToolFailed) as exc:
            raise _tool_error(exc) from None

    @server.tool()
    async def search_record(
        resource_type: ResourceType,
        code: str | None = None,
        text: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        limit: int = 25,
    ) -> str:
        """Search the patient's record for one resource type; cited lines, newest first.

        code: a code from the manifest ("4548-4"), "system|code", or words of a code's display name;
        text: words that must all appear in a line; date_from / date_to: YYYY-MM-DD (or YYYY-MM, YYYY);
        limit: most resources to list (1-100)."""
        try:
            query = RecordQuery.parse(resource_type, code, text, date_from, date_to, limit)
            return await reader().search_text(server.patient(), query)
        except (BadToolArguments, ToolFailed, FhirError) as exc:
            raise _tool_error(exc) from None

    if guidelines is not None:
        index = guidelines

        @server.tool()
        async def search_guidelines(query: str, k: int = 5) -> str:
            """Search the clinical guideline index; passages cited [guideline: <title> § <section>]."""
            return str(await index.ainvoke({"query": query, "k": k}))


@dataclass
class _Session:
    """What the tools share: the bound patient, the FHIR client and the workflows' ingredients."""

    settings: ApiSettings
    patient_id: str
    fhir: FhirClient
    load_model: Callable[[], BaseChatModel]
    guideline_index: Path | None
    _model: BaseChatModel | None = None

    def model(self) -> BaseChatModel:
        if self._model is None:
            self._model = self.load_model()
        return self._model

    def record_tools(self) -> list[BaseTool]:
        return make_fhir_tools(self.fhir, **self.settings.record_budgets())

    def guideline_tools(self) -> list[BaseTool]:
        if self.guideline_index is None:
            return []
        from clinicflow.tools import make_guideline_tool

        return [make_guideline_tool(self.guideline_index)]

    def _graph_options(self) -> dict[str, Any]:
        """A fresh in-memory checkpointer (nothing outlives the call) and the step limit."""
        return {"checkpointer": InMemorySaver(), "max_steps": self.settings.max_steps}

    async def ask(self, question: str) -> dict[str, Any]:
        """The ehr_qa workflow's answer for the bound patient."""
        from clinicflow.graphs.ehr_qa import EhrQaInputError, build_ehr_qa_graph, run_ehr_qa

        tools = [*self.record_tools(), *self.guideline_tools()]
        graph = build_ehr_qa_graph(self.model(), tools, **self._graph_options())
        run = run_ehr_qa(graph, question, self.patient_id, thread_id=uuid.uuid4().hex)
        result = await _refusing(EhrQaInputError, run)
        return result.model_dump(mode="json", include=_ANSWER_FIELDS)

    async def propose(self, instruction: str, context: str) -> dict[str, Any]:
        """The ehr_task workflow up to its first write, which is returned, not made."""
        from clinicflow.graphs.ehr_task import EhrTaskInputError, build_ehr_task_graph, run_ehr_task
        from clinicflow.tools import FhirWriter

        writer = FhirWriter(self.fhir)
        graph = build_ehr_task_graph(
            self.model(), self.record_tools(), writer, approval="require", **self._graph_options()
        )
        run = run_ehr_task(graph, instruction, context=context, patient_id=self.patient_id)
        result = await _refusing(EhrTaskInputError, run)
        # The run stops at its first write; it is never resumed here, so nothing reaches the server.
        return {
            "status": result.status,
            "pending_approval": result.pending_approval,
            "summary": result.summary,
            "written": [w.model_dump(mode="json") for w in result.writes],
            "note": "Not written. Submit the task to clinicflow's API (workflow ehr_task) to have a person "
            "approve it there.",
        }


def _tool_error(exc: Exception) -> ToolError:
    return ToolError(str(exc))


async def _refusing(error: type[Exception], run: Awaitable[_T]) -> _T:
    """The run's result; the workflow refusing its input is the tool's error."""
    try:
        return await run
    except error as exc:
        raise _tool_error(exc) from None


def build_mcp_server(
    settings: ApiSettings,
    fhir: FhirClient,
    patient_id: str,
    load_model: Callable[[], BaseChatModel],
    *,
    guideline_index: Path | None = None,
) -> PatientBoundServer:
    """The MCP server for one patient (checked to exist by `open_mcp_server`, not here)."""
    session = _Session(settings, patient_id, fhir, load_model, guideline_index)
    reader = RecordReader(fhir, **settings.record_budgets())
    server = PatientBoundServer(
        lambda: patient_id, name="clinicflow", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING"
    )
    add_record_tools(server, lambda: reader, next(iter(session.guideline_tools()), None))

    @server.tool()
    async def ask(question: str) -> dict[str, Any]:
        """Answer a question about the patient's record with the ehr_qa workflow: the answer, the
        [ResourceType/id] citations it rests on, and its status (answered, or refused without evidence)."""
        return await session.ask(question)

    @server.tool()
    async def propose_task(instruction: str, context: str = "") -> dict[str, Any]:
        """Plan a task that writes to the record (e.g. an order) with the ehr_task workflow. Nothing is
        written: the result is the pending approval (the exact resource) for a person to decide."""
        return await session.propose(instruction, context)

    return server


@contextlib.asynccontextmanager
async def open_mcp_server(
    settings: ApiSettings,
    fhir_url: str,
    patient_id: str,
    load_model: Callable[[], BaseChatModel],
    *,
    guideline_index: Path | None = None,
) -> AsyncIterator[PatientBoundServer]:
    """Connect to the FHIR server, check the patient is there, and yield its MCP server."""
    async with FhirClient(
        fhir_url, token=settings.fhir_token, timeout=settings.fhir_timeout_s, retries=settings.fhir_retries
    ) as fhir:
        try:
            await fhir.read("Patient", patient_id)
        except ValueError as exc:
            raise McpPatientError(f"not a FHIR patient id: {patient_id!r} ({exc})") from None
        except FhirNotFoundError:
            raise McpPatientError(f"Patient/{patient_id} is not on the FHIR server at {fhir_url}") from None
        yield build_mcp_server(settings, fhir, patient_id, load_model, guideline_index=guideline_index)


Transport = Literal["stdio", "streamable-http"]


async def serve(server: PatientBoundServer, transport: Transport, host: str, port: int) -> None:
    """Run the server on stdio, or streamable HTTP at http://host:port/mcp."""
    if transport == "stdio":
        await server.run_stdio_async()
    else:
        await server.run_streamable_http_async(host=host, port=port)
