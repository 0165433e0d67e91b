"""The `search_guidelines` LangChain tool: cited guideline passages as text, citations as the artifact."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field, ValidationError

from clinicflow.tools.errors import BadToolArguments, ToolFailed, validation_problems
from clinicflow.tools.guidelines.embedder import Embedder
from clinicflow.tools.guidelines.errors import GuidelineError, GuidelineQueryError
from clinicflow.tools.guidelines.search import MAX_K, GuidelineSearcher, Passage

__all__ = ["BAD_ARGUMENTS", "TOOL_FAILED", "GuidelineSearchArgs", "make_guideline_tool"]

TOOL_NAME = "search_guidelines"
BAD_ARGUMENTS = "bad arguments for search_guidelines: {detail}"
TOOL_FAILED = "search_guidelines failed: {detail}"

_DESCRIPTION = (
    "Search clinical practice guideline summaries (targets, thresholds, doses, screening intervals). "
    "Returns passages, each under a citation like [guideline: <document> § <section>]; "
    "cite it when you use it."
)


class GuidelineSearchArgs(BaseModel):
    """What the model may pass to `search_guidelines`."""

    query: str = Field(description="What to look up, in plain clinical words.")
    k: int = Field(5, description=f"How many passages to return (1-{MAX_K}).")


def _artifact(passages: list[Passage]) -> list[dict[str, Any]]:
    return [
        {
            "citation": p.citation,
            "doc_id": p.chunk.doc_id,
            "title": p.chunk.title,
            "section": p.chunk.section,
            "page": p.chunk.page,
            "source": p.chunk.source,
            "year": p.chunk.year,
            "chunk_id": p.chunk.chunk_id,
        }
        for p in passages
    ]


def _validation_message(error: ValidationError) -> str:
    return BAD_ARGUMENTS.format(detail=validation_problems(error.errors()))


@contextmanager
def _tool_errors() -> Iterator[None]:
    """Search errors as the tool's typed errors: the caller's arguments, or the index."""
    try:
        yield
    except GuidelineQueryError as exc:
        raise BadToolArguments(str(exc), template=BAD_ARGUMENTS) from exc
    except GuidelineError as exc:
        raise ToolFailed(TOOL_FAILED.format(detail=exc)) from exc


def make_guideline_tool(
    index_path: Path,
    *,
    embedder: Embedder | None = None,
    token_budget: int = 1200,
    searcher: GuidelineSearcher | None = None,
) -> BaseTool:
    """`search_guidelines(query, k=5)` over the index at `index_path`; the encoder loads on first search."""
    engine = searcher or GuidelineSearcher(Path(index_path), embedder=embedder)

    def _run(query: str, k: int = 5) -> tuple[str, list[dict[str, Any]]]:
        with _tool_errors():
            text, passages = engine.answer_with_passages(query, k, token_budget=token_budget)
        return text, _artifact(passages)

    async def _arun(query: str, k: int = 5) -> tuple[str, list[dict[str, Any]]]:
        with _tool_errors():
            text, passages = await engine.aanswer_with_passages(query, k, token_budget=token_budget)
        return text, _artifact(passages)

    return StructuredTool.from_function(
        func=_run,
        coroutine=_arun,
        name=TOOL_NAME,
        description=_DESCRIPTION,
        args_schema=GuidelineSearchArgs,
        response_format="content_and_artifact",
        handle_tool_error=True,
        handle_validation_error=_validation_message,
    )
