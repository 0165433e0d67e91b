"""The search_guidelines LangChain tool: cited text, citation artifact, readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage

from clinicflow.tools.guidelines import NO_GUIDELINES, GuidelineIndex, make_guideline_tool
from tests.unit.guidelines.helpers import HashEmbedder


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "hypo.md").write_text(
        "---\ntitle: Hypoglycemia\nsource: Example Diabetes Standards\nyear: 2024\n---\n"
        "## Treatment\n\nGive 15 to 20 g of glucose and recheck after 15 minutes.\n\n"
        "## Levels\n\nLevel 2 is glucose below 54 mg/dL.\n"
    )
    path = tmp_path / "g.sqlite"
    GuidelineIndex(path, HashEmbedder()).index_directory(folder)
    return path


def test_tool_schema_is_query_and_k(index_path: Path) -> None:
    tool = make_guideline_tool(index_path, embedder=HashEmbedder())
    assert tool.name == "search_guidelines"
    assert set(tool.args) == {"query", "k"}
    assert tool.args["k"]["default"] == 5


def test_tool_returns_cited_passages(index_path: Path) -> None:
    tool = make_guideline_tool(index_path, embedder=HashEmbedder())
    text = tool.invoke({"query": "grams of glucose to give and when to recheck", "k": 1})
    assert text.startswith("[guideline: Hypoglycemia § Treatment] (Example Diabetes Standards, 2024)")
    assert "15 to 20 g of glucose" in text


def test_tool_call_carries_citations_as_artifact(index_path: Path) -> None:
    tool = make_guideline_tool(index_path, embedder=HashEmbedder())
    message = tool.invoke(
        {"type": "tool_call", "id": "c1", "name": "search_guidelines", "args": {"query": "level 2 glucose"}}
    )
    assert isinstance(message, ToolMessage)
    citations = [a["citation"] for a in message.artifact]
    assert "[guideline: Hypoglycemia § Levels]" in citations
    assert all(c in message.content for c in citations)


async def test_tool_async_and_empty_index(tmp_path: Path, index_path: Path) -> None:
    tool = make_guideline_tool(index_path, embedder=HashEmbedder())
    assert "[guideline: Hypoglycemia" in await tool.ainvoke({"query": "glucose"})
    empty = make_guideline_tool(tmp_path / "missing.sqlite", embedder=HashEmbedder())
    assert await empty.ainvoke({"query": "glucose"}) == NO_GUIDELINES


def test_bad_arguments_become_messages(index_path: Path) -> None:
    tool = make_guideline_tool(index_path, embedder=HashEmbedder())
    assert tool.invoke({"query": " "}).startswith("bad arguments for search_guidelines: query must")
    assert tool.invoke({"query": "x", "k": 99}).startswith("bad arguments for search_guidelines: k must")
    assert tool.invoke({"query": "x", "k": "many"}).startswith("bad arguments for search_guidelines: k:")


def test_broken_index_becomes_a_failure_message(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 50)
    tool = make_guideline_tool(junk, embedder=HashEmbedder())
    assert tool.invoke({"query": "glucose"}).startswith("search_guidelines failed:")
