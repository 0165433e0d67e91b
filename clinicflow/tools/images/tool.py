"""LangChain tool over an image index: `search_images` (text -> image), patient-scoped from graph state."""

from __future__ import annotations

import asyncio
from typing import Annotated

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.prebuilt import InjectedState
from pydantic import Field, ValidationError

from .errors import ImageToolError
from .search import ImageIndex

__all__ = ["BAD_ARGUMENTS", "NO_IMAGES", "NO_PATIENT_IMAGES", "TOOL_FAILED", "make_image_tools"]

BAD_ARGUMENTS = "search_images: bad arguments: {error}"
TOOL_FAILED = "search_images failed: {error}"
NO_IMAGES = "no images indexed"
NO_PATIENT_IMAGES = "not found in the record: no images indexed for this patient"
MAX_K = 20

_DESCRIPTION = (
    "Find medical images (X-ray, CT, dermatology, pathology, ...) that match a text description, "
    "e.g. 'chest X-ray with right pneumothorax'. Searches the current patient's images when a patient "
    "is in context. Returns one line per image, most similar first, citing the image and its FHIR "
    "resource, e.g. `2021-03-04 Chest X-ray similarity 0.312 [image: ...] [Media/123]`."
)


def _bad_arguments(error: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
    return BAD_ARGUMENTS.format(error=problems)


def make_image_tools(index: ImageIndex) -> list[BaseTool]:
    """`[search_images]` bound to `index`; the patient id comes from graph state, never from the model."""

    def search_images(
        query: Annotated[str, Field(min_length=1, description="What the images should show.")],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="How many images to return.")] = 5,
        patient_id: Annotated[str | None, InjectedState("patient_id")] = None,
    ) -> str:
        if not query.strip():
            return BAD_ARGUMENTS.format(error="query: the text query is empty")
        scope = {"patient_id": patient_id} if patient_id else None
        try:
            if index.count(scope) == 0:
                return NO_PATIENT_IMAGES if scope else NO_IMAGES
            hits = index.search_text(query, k=k, filter=scope)
        except (ImageToolError, ValueError, OSError) as exc:
            raise ToolException(TOOL_FAILED.format(error=exc)) from exc
        return "\n".join(hit.line() for hit in hits)

    async def asearch_images(
        query: str,
        k: int = 5,
        patient_id: str | None = None,
    ) -> str:
        return await asyncio.to_thread(search_images, query, k, patient_id)

    tool = StructuredTool.from_function(
        func=search_images,
        coroutine=asearch_images,
        name="search_images",
        description=_DESCRIPTION,
        handle_tool_error=True,
        handle_validation_error=_bad_arguments,
    )
    return [tool]
