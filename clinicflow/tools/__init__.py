"""LangChain tools over the patient's record (FHIR), clinical guidelines and images."""

from .fhir_tools import (
    BAD_ARGUMENTS,
    PATIENT_NOT_FOUND,
    SEARCHABLE_TYPES,
    TOOL_FAILED,
    BadToolArguments,
    RecordQuery,
    RecordReader,
    SearchResult,
    ToolFailed,
    make_fhir_tools,
)
from .guidelines import make_guideline_tool
from .images import make_image_tools
from .manifest import RecordManifest, build_manifest, render_manifest
from .render import References, citation, estimate_tokens, render_lines, render_resource

__all__ = [
    "BAD_ARGUMENTS",
    "PATIENT_NOT_FOUND",
    "SEARCHABLE_TYPES",
    "TOOL_FAILED",
    "BadToolArguments",
    "RecordManifest",
    "RecordQuery",
    "RecordReader",
    "References",
    "SearchResult",
    "ToolFailed",
    "build_manifest",
    "citation",
    "estimate_tokens",
    "make_fhir_tools",
    "make_guideline_tool",
    "make_image_tools",
    "render_lines",
    "render_manifest",
    "render_resource",
]
