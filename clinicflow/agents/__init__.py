"""Agent roles: a prompt, a tool set and an output contract per role."""

from clinicflow.agents.ehr_qa import (
    ANSWERER,
    EXTRACTOR,
    NOT_FOUND,
    PLANNER,
    ExtractedFacts,
    Fact,
    FinalAnswer,
    Role,
    bind_role,
)

__all__ = [
    "ANSWERER",
    "EXTRACTOR",
    "NOT_FOUND",
    "PLANNER",
    "ExtractedFacts",
    "Fact",
    "FinalAnswer",
    "Role",
    "bind_role",
]
