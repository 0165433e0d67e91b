"""The EHR QA graph with guideline search and image retrieval bound beside the record tools.

Scripted model; the real `search_guidelines` tool over a small index (hashed bag-of-words encoder) and
the real `search_images` tool over an in-memory index (fake encoder).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.tools import BaseTool

from clinicflow.agents.ehr_qa import FINISH_TOOL_NAME, GUIDANCE_PREFIX, NOT_FOUND
from clinicflow.graphs.ehr_qa import EhrQaResult, build_ehr_qa_graph, run_ehr_qa
from clinicflow.graphs.ehr_qa.nodes import evidence_items
from clinicflow.tools import make_guideline_tool, make_image_tools
from clinicflow.tools.guidelines import GuidelineIndex
from clinicflow.tools.images import EmbeddedVectorStore, ImageIndex, LoadedImage
from tests.fakes import ScriptedChatModel, calls, tool_call
from tests.unit.graphs.record_tools import RecordTools
from tests.unit.guidelines.helpers import HashEmbedder
from tests.unit.images.fakes import FakeEncoder, solid

A1C = "Observation/obs-a1c-2"
TARGET = "guideline: Diabetes targets § Glycemic targets"
MONITORING = "guideline: Diabetes targets § Monitoring"
CXR = "image: /imaging/pat-1/cxr-2021.png"
CXR_MEDIA = "Media/img-1"


@pytest.fixture
def guideline_tool(tmp_path: Path) -> BaseTool:
    folder = tmp_path / "guidelines"
    folder.mkdir()
    (folder / "diabetes.md").write_text(
        "---\ntitle: Diabetes targets\nsource: Example Diabetes Standards\nyear: 2024\n---\n"
        "## Glycemic targets\n\nFor many nonpregnant adults an HbA1c goal below 7% is appropriate.\n"
        "A looser goal below 8% suits people with limited life expectancy.\n\n"
        "## Monitoring\n\nMeasure HbA1c every 3 months when therapy changes or goals are not met.\n"
    )
    path = tmp_path / "guidelines.sqlite"
    embedder = HashEmbedder()
    GuidelineIndex(path, embedder).index_directory(folder)
    return make_guideline_tool(path, embedder=embedder)


@pytest.fixture
def image_tools() -> list[BaseTool]:
    index = ImageIndex(FakeEncoder(), EmbeddedVectorStore(None))
    rows = [
        ("pat-1", (200, 0, 0), "/imaging/pat-1/cxr-2021.png", CXR_MEDIA),
        ("pat-2", (0, 0, 200), "/imaging/pat-2/cxr-2020.png", "Media/other-patient"),
    ]
    index.add(
        [
            LoadedImage(
                id=ref,
                image=solid(color),
                metadata={
                    "patient_id": pid,
                    "fhir_ref": ref,
                    "path": path,
                    "title": "Chest X-ray",
                    "date": "2021-03-04",
                },
            )
            for pid, color, path, ref in rows
        ]
    )
    return make_image_tools(index)


def finish() -> object:
    return calls(tool_call(FINISH_TOOL_NAME))


def facts(*items: tuple[str, list[str]]) -> object:
    return calls(tool_call("record_facts", facts=[{"text": t, "citations": c} for t, c in items]))


def final(answer: str, citations: list[str], **extra: object) -> object:
    return calls(tool_call("final_answer", answer=answer, citations=citations, **extra))


async def ask(model: ScriptedChatModel, extra: list[BaseTool], question: str) -> EhrQaResult:
    graph = build_ehr_qa_graph(model, [*RecordTools().build(), *extra])
    return await run_ehr_qa(graph, question, "pat-1")


def checks(result: EhrQaResult) -> list[str]:
    return [
        f"{e.summary} {e.error or ''}" for e in result.trace if (e.kind, e.name) == ("check", "citations")
    ]


async def test_planner_calls_guideline_search_and_the_answer_cites_it_with_a_record_resource(
    guideline_tool: BaseTool,
) -> None:
    model = ScriptedChatModel(
        script=[
            calls(
                tool_call("search_record", resource_type="Observation", code="4548-4"),
                tool_call("search_guidelines", query="HbA1c goal for adults", k=1),
            ),
            finish(),
            facts(("HbA1c 7.9 % on 2023-04-02", [A1C]), ("HbA1c goal below 7% for many adults", [TARGET])),
            final(
                f"7.9 % on 2023-04-02 [{A1C}], above the usual goal below 7% [{TARGET}]",
                [A1C, f"[{TARGET}]"],
            ),
        ]
    )
    result = await ask(model, [guideline_tool], "Is the latest HbA1c above the usual target?")

    assert result.status == "answered" and result.errors == []
    assert result.citations == [A1C, TARGET]
    assert result.answer == f"7.9 % on 2023-04-02 [{A1C}], above the usual goal below 7% [{TARGET}]"
    assert model.calls[0].tool_names == [
        "record_manifest",
        "search_record",
        "search_guidelines",
        FINISH_TOOL_NAME,
    ]
    passage = next(e for e in result.evidence if e.tool == "search_guidelines")
    assert passage.citations == [TARGET]
    assert passage.text.startswith(f"[{TARGET}] (Example Diabetes Standards, 2024) For many nonpregnant")
    assert "looser goal below 8%" in passage.text, "the passage's text is kept with its citation"
    assert f"- {passage.text}" in model.calls[2].text, "the extractor sees the whole passage"
    tool_events = [e for e in result.trace if e.kind == "tool" and e.name == "search_guidelines"]
    assert len(tool_events) == 1 and tool_events[0].args == {"query": "HbA1c goal for adults", "k": 1}
    assert tool_events[0].summary.endswith("1 cited")
    assert checks(result) == []


async def test_guideline_only_evidence_for_a_record_question_is_not_found(guideline_tool: BaseTool) -> None:
    model = ScriptedChatModel(
        script=[
            calls(tool_call("search_guidelines", query="HbA1c goal")),
            finish(),
            facts(("HbA1c goal below 7%", [TARGET])),
            final("The HbA1c is below 7%", [TARGET, "Observation/invented"]),
        ]
    )
    result = await ask(model, [guideline_tool], "What was the patient's most recent HbA1c?")

    assert (result.answer, result.citations, result.status) == (NOT_FOUND, [], "not_found")
    assert [f.citations for f in result.facts] == [[TARGET]], "the guideline fact itself is valid evidence"
    assert any("Observation/invented" in c for c in checks(result)), "an invented record citation is dropped"
    assert any("cites no record resource" in c and "no record evidence" in c for c in checks(result))


async def test_general_guidance_may_rest_on_a_guideline_alone_and_is_labelled(
    guideline_tool: BaseTool,
) -> None:
    model = ScriptedChatModel(
        script=[
            calls(tool_call("search_guidelines", query="how often to measure HbA1c")),
            finish(),
            facts(("Measure HbA1c every 3 months when therapy changes", [f"[{MONITORING}]"])),
            final("Every 3 months when therapy changes", [MONITORING], about_record=False),
        ]
    )
    result = await ask(model, [guideline_tool], "How often should HbA1c be measured after a therapy change?")

    assert result.status == "answered"
    assert result.answer == f"{GUIDANCE_PREFIX} Every 3 months when therapy changes [{MONITORING}]"
    assert result.citations == [MONITORING]
    assert any("general guidance" in c for c in checks(result))


async def test_an_empty_guideline_index_gives_no_evidence(tmp_path: Path) -> None:
    tool = make_guideline_tool(tmp_path / "missing.sqlite", embedder=HashEmbedder())
    model = ScriptedChatModel(script=[calls(tool_call("search_guidelines", query="HbA1c goal")), finish()])
    result = await ask(model, [tool], "What is the HbA1c goal?")

    assert "no guidelines indexed" in model.calls[1].text
    assert (result.answer, result.status, result.evidence) == (NOT_FOUND, "not_found", [])


async def test_image_citations_are_accepted_with_their_record_resource(image_tools: list[BaseTool]) -> None:
    model = ScriptedChatModel(
        script=[
            calls(tool_call("search_images", query="chest x-ray", patient_id="pat-2")),
            finish(),
            facts(("Chest X-ray on 2021-03-04", [CXR])),
            final(
                f"A chest X-ray on 2021-03-04 [{CXR}] [image: /imaging/pat-2/cxr-2020.png]",
                [CXR, "Media/other-patient"],
            ),
        ]
    )
    result = await ask(model, image_tools, "Does the patient have a chest X-ray?")

    assert result.status == "answered"
    assert result.citations == [CXR, CXR_MEDIA], "the image's record resource comes with it"
    assert result.answer == f"A chest X-ray on 2021-03-04 [{CXR}] [{CXR_MEDIA}]"
    assert [e.citations for e in result.evidence if e.tool == "search_images"] == [[CXR, CXR_MEDIA]]
    assert all("pat-2" not in e.text and "other-patient" not in e.text for e in result.evidence)
    assert result.trace[1].args["ignored_args"] == ["search_images.patient_id"]
    dropped = [c for e in result.trace if e.kind == "check" for c in e.args.get("dropped", [])]
    assert dropped == ["Media/other-patient", "image: /imaging/pat-2/cxr-2020.png"]


async def test_bad_image_search_arguments_are_bad_arguments_not_a_failure(
    image_tools: list[BaseTool],
) -> None:
    model = ScriptedChatModel(script=[calls(tool_call("search_images", query="chest x-ray", k=0)), finish()])
    result = await ask(model, image_tools, "Does the patient have a chest X-ray?")

    assert "search_images: bad arguments: k:" in model.calls[1].text
    event = next(e for e in result.trace if e.kind == "tool" and e.name == "search_images")
    assert (event.error or "").startswith("bad arguments:")
    assert (result.errors, result.status) == ([], "not_found")


def test_evidence_items_join_a_passage_and_keep_record_lines() -> None:
    text = (
        "[guideline: Diabetes targets § Glycemic targets] (ADA, 2024)\nGoal below 7%.\n\nLooser below 8%.\n"
        "2023-04-02 Hemoglobin A1c 7.9 % [Observation/a]\nan uncited line\n"
        "[4548-4] listed first 8.4 % [Observation/b]\nnot part of that line"
    )
    assert evidence_items(text) == [
        "[guideline: Diabetes targets § Glycemic targets] (ADA, 2024) Goal below 7%. Looser below 8%.",
        "2023-04-02 Hemoglobin A1c 7.9 % [Observation/a]",
        "[4548-4] listed first 8.4 % [Observation/b]",
    ]
