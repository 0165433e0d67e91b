"""`make_fhir_tools`: the patient-scoped tools `record_manifest` and `search_record` over one reader."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.prebuilt import InjectedState
from pydantic import ValidationError

from clinicflow.fhir import FhirClient, FhirError

from ..errors import BAD_ARGUMENTS, ToolFailed
from .query import DEFAULT_LIMIT, SEARCHABLE_TYPES, RecordQuery, ResourceType
from .reader import RecordReader

__all__ = ["TOOL_FAILED", "make_fhir_tools"]

TOOL_FAILED = "Tool failed: FHIR server error: {detail}"
_MANIFEST_DESCRIPTION = (
    "Overview of the patient's record: resource types with counts and date spans, and the most frequent "
    "codes per type (code, display, count). Call it first to choose what to search."
)


def _validation_message(error: ValidationError) -> str:
    problems = []
    valid_types = f"use one of {', '.join(SEARCHABLE_TYPES)}"
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ())) or "arguments"
        if item.get("type") == "missing":
            problems.append(f"{where} is required" + (f"; {valid_types}" if where == "resource_type" else ""))
        elif where == "resource_type":
            problems.append(f"resource_type {item.get('input')!r} is not searchable; {valid_types}")
        else:
            problems.append(f"{where}: {item.get('msg')}")
    return BAD_ARGUMENTS.format(detail="; ".join(problems))


def _tool_error(error: ToolException) -> str:
    return str(error)


@contextmanager
def _server_errors() -> Iterator[None]:
    try:
        yield
    except FhirError as exc:
        raise ToolFailed(TOOL_FAILED.format(detail=exc)) from exc


def _record_tool(coroutine: Callable[..., Awaitable[str]], **options: Any) -> BaseTool:
    """A tool named after `coroutine` that answers its own errors, bad arguments naming what is allowed."""
    return StructuredTool.from_function(
        coroutine=coroutine,
        name=coroutine.__name__,
        handle_tool_error=_tool_error,
        handle_validation_error=_validation_message,
        **options,
    )


def make_fhir_tools(
    client: FhirClient,
    *,
    token_budget: int = 1200,
    manifest_budget: int = 1500,
    max_fetch: int = 2000,
) -> list[BaseTool]:
    """The patient-scoped FHIR tools `record_manifest` and `search_record`, sharing one reader."""
    reader = RecordReader(
        client, token_budget=token_budget, manifest_budget=manifest_budget, max_fetch=max_fetch
    )

    async def record_manifest(patient_id: Annotated[str, InjectedState("patient_id")]) -> str:
        """The record manifest; see `_MANIFEST_DESCRIPTION`."""
        with _server_errors():
            return await reader.manifest_text(patient_id)

    async def search_record(
        resource_type: ResourceType,
        patient_id: Annotated[str, InjectedState("patient_id")],
        code: str | None = None,
        text: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> str:
        """Search the patient's record for one resource type; returns cited lines, newest first.

        Args:
            resource_type: FHIR resource type to search, e.g. Condition, Observation, MedicationRequest.
            code: a code from the manifest ("4548-4"), "system|code", or words of a code's display name.
            text: words that must all appear in a result line (displays, reasons, names; any case).
            date_from: earliest date, YYYY-MM-DD (YYYY-MM and YYYY also work).
            date_to: latest date, YYYY-MM-DD (YYYY-MM and YYYY also work).
            limit: most resources to list (1-100).
        """
        query = RecordQuery.parse(resource_type, code, text, date_from, date_to, limit)
        with _server_errors():
            return await reader.search_text(patient_id, query)

    return [
        _record_tool(record_manifest, description=_MANIFEST_DESCRIPTION),
        _record_tool(search_record, parse_docstring=True),
    ]
