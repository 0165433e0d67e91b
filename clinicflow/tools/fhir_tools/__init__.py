"""Patient-scoped FHIR tools: a manifest of the record and a search by type, code, text and dates.

The patient id comes from graph state (`InjectedState("patient_id")`) and never appears in the schema
the model sees. Every query carries `patient=<id>`, and every returned resource is checked to reference
that patient; anything else is dropped.

The modules: `query` (what may be searched, and the validated arguments), `matching` (does a resource
match), `linked` (labels for what resources point to), `reader` (`RecordReader`, the engine) and
`tools` (the LangChain tools).
"""

from ..errors import BAD_ARGUMENTS, BadToolArguments, ToolFailed
from .query import SEARCHABLE_TYPES, RecordQuery, ResourceType
from .reader import NO_PATIENT, NOT_FOUND, PATIENT_NOT_FOUND, RecordReader, SearchResult
from .tools import TOOL_FAILED, make_fhir_tools

__all__ = [
    "BAD_ARGUMENTS",
    "NOT_FOUND",
    "NO_PATIENT",
    "PATIENT_NOT_FOUND",
    "SEARCHABLE_TYPES",
    "TOOL_FAILED",
    "BadToolArguments",
    "RecordQuery",
    "RecordReader",
    "ResourceType",
    "SearchResult",
    "ToolFailed",
    "make_fhir_tools",
]
