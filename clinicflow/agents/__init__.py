"""Agent roles: a prompt, a tool set and an output contract per role."""

from clinicflow.agents.ehr_qa import (
    ANSWERER,
    EXTRACTOR,
    GUIDANCE_PREFIX,
    NOT_FOUND,
    PLANNER,
    CitationKind,
    ExtractedFacts,
    Fact,
    FinalAnswer,
    Role,
    bind_role,
    citation_kind,
    citations_in,
    is_record_citation,
)

__all__ = [
    "ANSWERER",
    "EXTRACTOR",
    "GUIDANCE_PREFIX",
    "NOT_FOUND",
    "PLANNER",
    "CitationKind",
    "ExtractedFacts",
    "Fact",
    "FinalAnswer",
    "Role",
    "bind_role",
    "citation_kind",
    "citations_in",
    "is_record_citation",
]
