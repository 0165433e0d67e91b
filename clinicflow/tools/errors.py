"""The two ways a tool tells the model it could not answer, raised as typed exceptions.

A tool raises them and its `handle_tool_error` turns them into the message the model reads (their text);
the graph's guarded tool call sees the exception itself and records its kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from langchain_core.tools import ToolException

__all__ = ["BAD_ARGUMENTS", "BadToolArguments", "ToolFailed", "validation_problems"]

BAD_ARGUMENTS = "Bad arguments: {detail}"


class BadToolArguments(ToolException):
    """The model's arguments are invalid; the message says why and names the valid options."""

    def __init__(self, detail: str, *, template: str = BAD_ARGUMENTS) -> None:
        super().__init__(template.format(detail=detail))


class ToolFailed(ToolException):
    """The tool could not answer: its server or index failed, or no patient is in context."""


def validation_problems(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic error details as one line: `where: what` for each, joined by "; "."""
    return "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in errors)
