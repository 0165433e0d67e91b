"""The `search_images` tool: schema hides the patient, state scopes the search, errors become messages."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import numpy as np
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode

from clinicflow.tools.images import (
    EmbeddedVectorStore,
    ImageIndex,
    LoadedImage,
    make_cohort_image_tool,
    make_image_tools,
)
from clinicflow.tools.images.tool import NO_IMAGES, NO_PATIENT, NO_PATIENT_IMAGES

from .fakes import FakeEncoder, solid


def build_index() -> ImageIndex:
    index = ImageIndex(FakeEncoder(), EmbeddedVectorStore(None))
    rows = [("p1", (200, 0, 0), "Media/a"), ("p1", (0, 200, 0), "Media/b"), ("p2", (0, 0, 200), "Media/c")]
    index.add(
        [
            LoadedImage(
                id=ref,
                image=solid(color),
                metadata={"patient_id": pid, "fhir_ref": ref, "path": ref, "title": "Chest X-ray"},
            )
            for pid, color, ref in rows
        ]
    )
    return index


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    patient_id: str


def tool_graph(index: ImageIndex) -> Any:
    """A one-node graph running the image tools, as the EHR QA graph would."""
    graph = StateGraph(State)
    graph.add_node("tools", ToolNode(make_image_tools(index)))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    return graph.compile()


def call(args: dict[str, Any], call_id: str = "c1") -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": "search_images", "args": args, "id": call_id}])


def test_schema_hides_patient_id() -> None:
    (tool,) = make_image_tools(build_index())
    assert tool.name == "search_images"
    schema = tool.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    assert set(schema["properties"]) == {"query", "k"}
    assert schema["required"] == ["query"]


async def test_patient_in_state_scopes_results() -> None:
    node = tool_graph(build_index())
    state = {"messages": [call({"query": "chest x-ray", "k": 10, "patient_id": "p2"})], "patient_id": "p1"}
    out = await node.ainvoke(state)
    msg = out["messages"][-1]
    assert isinstance(msg, ToolMessage) and msg.status == "success"
    assert isinstance(msg.content, str)
    lines = msg.content.splitlines()
    assert len(lines) == 2 and {line.rsplit(" ", 1)[-1] for line in lines} == {"[Media/a]", "[Media/b]"}
    assert all("similarity" in line and line.startswith("Chest X-ray") for line in lines)


async def test_without_patient_the_workflow_tool_refuses_and_only_the_cohort_tool_spans_patients() -> None:
    node = tool_graph(build_index())
    out = await node.ainvoke({"messages": [call({"query": "chest", "k": 10})]})
    assert out["messages"][-1].content == NO_PATIENT and out["messages"][-1].status == "error"
    cohort = make_cohort_image_tool(build_index())
    assert cohort.name == "search_cohort_images"
    assert len((await cohort.ainvoke({"query": "chest", "k": 10})).splitlines()) == 3


async def test_empty_index_and_unknown_patient() -> None:
    empty = tool_graph(ImageIndex(FakeEncoder(), EmbeddedVectorStore(None)))
    out = await empty.ainvoke({"messages": [call({"query": "chest"})], "patient_id": "p1"})
    assert out["messages"][-1].content == NO_PATIENT_IMAGES
    assert (
        make_cohort_image_tool(ImageIndex(FakeEncoder(), EmbeddedVectorStore(None))).invoke(
            {"query": "chest"}
        )
        == NO_IMAGES
    )
    node = tool_graph(build_index())
    out = await node.ainvoke({"messages": [call({"query": "chest"})], "patient_id": "p9"})
    assert out["messages"][-1].content == NO_PATIENT_IMAGES


async def test_bad_arguments_and_failures_are_messages() -> None:
    node = tool_graph(build_index())
    out = await node.ainvoke({"messages": [call({"query": "chest", "k": 500})], "patient_id": "p1"})
    assert out["messages"][-1].content.startswith("search_images: bad arguments: k:")
    other = EmbeddedVectorStore(None, dim=3)
    other.add(["x"], np.array([[1.0, 0.0, 0.0]]), [{"patient_id": "p1"}])
    broken = ImageIndex(FakeEncoder(), other)
    out = await tool_graph(broken).ainvoke({"messages": [call({"query": "chest"})], "patient_id": "p1"})
    assert out["messages"][-1].content.startswith("search_images failed:")
    assert "3-dimensional" in out["messages"][-1].content


def test_sync_invoke() -> None:
    (tool,) = make_image_tools(build_index())
    text = tool.invoke({"query": "chest", "k": 1, "patient_id": "p1"})
    assert isinstance(text, str) and len(text.splitlines()) == 1
