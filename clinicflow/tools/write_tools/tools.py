"""The write tools a model calls: each only previews the resource it proposes; a graph writes it after
approval."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from .args import (
    ARGS_MODELS,
    CREATE_MEDICATION_REQUEST,
    CREATE_OBSERVATION,
    CREATE_RESOURCE,
    CREATE_SERVICE_REQUEST,
    WRITE_TOOL_NAMES,
)
from .prepared import WriteArgumentsError
from .proposal import prepare_write

__all__ = ["make_write_tools"]


def _preview(tool: str) -> Any:
    async def preview(**kwargs: Any) -> str:
        try:
            write = prepare_write(tool, kwargs, patient_id="in-context", run_id="preview", step=0)
        except WriteArgumentsError as exc:
            return f"Bad arguments: {exc.detail}"
        return (
            f"Proposed {write.resource_type} (not written; a write runs only after approval):\n"
            + json.dumps(write.resource, indent=1)
        )

    return preview


_DESCRIPTIONS = {
    CREATE_OBSERVATION: (
        "Record a measured value (e.g. a vital sign) for the patient in context. "
        "The write waits for approval."
    ),
    CREATE_MEDICATION_REQUEST: (
        "Order a medication (code, dose, route, rate) for the patient in context. "
        "The write waits for approval."
    ),
    CREATE_SERVICE_REQUEST: (
        "Order a lab test, referral or procedure (code, note, when) for the patient in context. "
        "The write waits for approval."
    ),
    CREATE_RESOURCE: (
        "Create any patient-owned FHIR R4 resource given as JSON for the patient in context. "
        "The write waits for approval."
    ),
}


def make_write_tools(names: Sequence[str] | None = None) -> list[BaseTool]:
    """The write tools a model may call; calling one directly only previews the resource, it never writes."""
    chosen = (
        list(names)
        if names is not None
        else [
            CREATE_OBSERVATION,
            CREATE_MEDICATION_REQUEST,
            CREATE_SERVICE_REQUEST,
            CREATE_RESOURCE,
        ]
    )
    unknown = [n for n in chosen if n not in WRITE_TOOL_NAMES]
    if unknown:
        raise ValueError(f"unknown write tools {unknown}; choose from {sorted(WRITE_TOOL_NAMES)}")
    return [
        StructuredTool(
            name=name,
            description=_DESCRIPTIONS[name],
            args_schema=ARGS_MODELS[name],
            coroutine=_preview(name),
            func=None,
        )
        for name in chosen
    ]
