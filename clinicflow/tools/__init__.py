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
from .write_tools import (
    WRITE_TOOL_NAMES,
    ApprovalPolicy,
    Approve,
    Edit,
    FhirWriter,
    Reject,
    make_write_tools,
)

__all__ = [
    "BAD_ARGUMENTS",
    "PATIENT_NOT_FOUND",
    "SEARCHABLE_TYPES",
    "TOOL_FAILED",
    "WRITE_TOOL_NAMES",
    "ApprovalPolicy",
    "Approve",
    "BadToolArguments",
    "Edit",
    "FhirWriter",
    "RecordManifest",
    "RecordQuery",
    "RecordReader",
    "References",
    "Reject",
    "SearchResult",
    "ToolFailed",
    "build_manifest",
    "citation",
    "estimate_tokens",
    "make_fhir_tools",
    "make_guideline_tool",
    "make_image_tools",
    "make_write_tools",
    "render_lines",
    "render_manifest",
    "render_resource",
]
