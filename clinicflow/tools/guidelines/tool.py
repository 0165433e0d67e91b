"""The `search_guidelines` LangChain tool: cited guideline passages as text, citations as the artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field, ValidationError

from clinicflow.tools.guidelines.embedder import Embedder
from clinicflow.tools.guidelines.errors import GuidelineError, GuidelineQueryError
from clinicflow.tools.guidelines.search import MAX_K, GuidelineSearcher, Passage

__all__ = ["BAD_ARGUMENTS", "TOOL_FAILED", "GuidelineSearchArgs", "make_guideline_tool"]

TOOL_NAME = "search_guidelines"
BAD_ARGUMENTS = "bad arguments for search_guidelines: {error}"
TOOL_FAILED = "search_guidelines failed: {error}"

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
    details = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in error.errors())
    return BAD_ARGUMENTS.format(error=details)


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
        try:
            text, passages = engine.answer_with_passages(query, k, token_budget=token_budget)
        except GuidelineQueryError as exc:
            raise ToolException(BAD_ARGUMENTS.format(error=exc)) from exc
        except GuidelineError as exc:
            raise ToolException(TOOL_FAILED.format(error=exc)) from exc
        return text, _artifact(passages)

    async def _arun(query: str, k: int = 5) -> tuple[str, list[dict[str, Any]]]:
        try:
            text, passages = await engine.aanswer_with_passages(query, k, token_budget=token_budget)
        except GuidelineQueryError as exc:
            raise ToolException(BAD_ARGUMENTS.format(error=exc)) from exc
        except GuidelineError as exc:
            raise ToolException(TOOL_FAILED.format(error=exc)) from exc
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
