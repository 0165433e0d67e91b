"""LangChain tools over an image index (text -> image).

`search_images` is the workflow tool: it searches only the images of the patient in graph state, and
refuses when no patient is in context. `search_cohort_images` searches every patient's images; it is a
separate research tool that no workflow binds, so a cohort-wide search is always asked for by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import InjectedState
from pydantic import Field, ValidationError

from ..errors import ToolFailed, validation_problems
from .errors import ImageToolError
from .search import ImageIndex

__all__ = [
    "BAD_ARGUMENTS",
    "NO_IMAGES",
    "NO_PATIENT",
    "NO_PATIENT_IMAGES",
    "TOOL_FAILED",
    "make_cohort_image_tool",
    "make_image_tools",
]

BAD_ARGUMENTS = "search_images: bad arguments: {detail}"
TOOL_FAILED = "search_images failed: {detail}"
NO_IMAGES = "no images indexed"
NO_PATIENT_IMAGES = "not found in the record: no images indexed for this patient"
NO_PATIENT = "search_images failed: no patient is in context; it searches only the patient's own images"
MAX_K = 20

_DESCRIPTION = (
    "Find medical images (X-ray, CT, dermatology, pathology, ...) that match a text description, "
    "e.g. 'chest X-ray with right pneumothorax'. Searches the current patient's images. Returns one "
    "line per image, most similar first, citing the image and its FHIR resource, e.g. "
    "`2021-03-04 Chest X-ray similarity 0.312 [image: ...] [Media/123]`."
)
_COHORT_DESCRIPTION = (
    "Research only: find images of ALL patients in the index that match a text description. "
    "Returns one line per image, most similar first, with its patient and FHIR resource."
)


def _bad_arguments(error: ValidationError) -> str:
    return BAD_ARGUMENTS.format(detail=validation_problems(error.errors()))


def _search(index: ImageIndex, query: str, k: int, scope: dict[str, str] | None) -> str:
    if not query.strip():
        return BAD_ARGUMENTS.format(detail="query: the text query is empty")
    try:
        if index.count(scope) == 0:
            return NO_PATIENT_IMAGES if scope else NO_IMAGES
        hits = index.search_text(query, k=k, filter=scope)
    except (ImageToolError, ValueError, OSError) as exc:
        raise ToolFailed(TOOL_FAILED.format(detail=exc)) from exc
    return "\n".join(hit.line() for hit in hits)


def _image_tool(
    func: Callable[..., str], coroutine: Callable[..., Awaitable[str]], description: str
) -> BaseTool:
    """A tool named after `func` that answers its own errors: a failure in words, bad arguments named."""
    return StructuredTool.from_function(
        func=func,
        coroutine=coroutine,
        name=func.__name__,
        description=description,
        handle_tool_error=True,
        handle_validation_error=_bad_arguments,
    )


def make_image_tools(index: ImageIndex) -> list[BaseTool]:
    """`[search_images]` bound to `index`; the patient id comes from graph state, never from the model,
    and without one the tool answers `NO_PATIENT`."""

    def search_images(
        query: Annotated[str, Field(min_length=1, description="What the images should show.")],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="How many images to return.")] = 5,
        patient_id: Annotated[str | None, InjectedState("patient_id")] = None,
    ) -> str:
        if not patient_id:
            raise ToolFailed(NO_PATIENT)
        return _search(index, query, k, {"patient_id": patient_id})

    async def asearch_images(
        query: str,
        k: int = 5,
        patient_id: str | None = None,
    ) -> str:
        return await asyncio.to_thread(search_images, query, k, patient_id)

    return [_image_tool(search_images, asearch_images, _DESCRIPTION)]


def make_cohort_image_tool(index: ImageIndex) -> BaseTool:
    """`search_cohort_images`: the same search over every patient's images, for research sessions."""

    def search_cohort_images(
        query: Annotated[str, Field(min_length=1, description="What the images should show.")],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="How many images to return.")] = 5,
    ) -> str:
        return _search(index, query, k, None)

    async def asearch_cohort_images(query: str, k: int = 5) -> str:
        return await asyncio.to_thread(search_cohort_images, query, k)

    return _image_tool(search_cohort_images, asearch_cohort_images, _COHORT_DESCRIPTION)
