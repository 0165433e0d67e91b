"""The EHR QA graph with guideline search bound beside the FHIR tools, against the real embedded FHIR
server and a real guideline index (two starter-corpus files, all-MiniLM-L6-v2).

The scripted model reads the real tool results from its prompt, so the citations it gives are the
server's and the index's own. The slow test runs the real Gemma 3 270M through the same graph.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import typer
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from clinicflow.agents.ehr_qa import FINISH_TOOL_NAME, NOT_FOUND, citations_in, is_record_citation
from clinicflow.cli.ask import answer_question, guideline_tools, image_tools
from clinicflow.fhir import FhirClient
from clinicflow.graphs.ehr_qa import EhrQaResult, build_ehr_qa_graph, run_ehr_qa
from clinicflow.settings import Settings
from clinicflow.tools import make_fhir_tools
from clinicflow.tools.guidelines import SHIPPED_CORPUS, GuidelineIndex, default_embedder
from tests.fakes import ScriptedChatModel, calls, tool_call

pytestmark = pytest.mark.integration

CORPUS_FILES = ("hypertension.md", "diabetes-glycemic-targets.md")
BP_PANEL = "85354-9"
QUESTION = "Is the patient's most recent blood pressure at the treatment target?"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir whose guidelines.sqlite indexes two starter-corpus files with the real encoder."""
    cache = tmp_path_factory.mktemp("cache")
    docs = cache / "docs"
    docs.mkdir()
    for name in CORPUS_FILES:
        shutil.copy(SHIPPED_CORPUS / name, docs / name)
    report = GuidelineIndex(cache / "guidelines.sqlite", default_embedder()).index_directory(docs)
    assert (report.total_documents, report.skipped) == (2, [])
    return cache


@pytest.fixture
def settings(cache_dir: Path, tmp_path: Path) -> Settings:
    return Settings(cache_dir=cache_dir, checkpoint_db=tmp_path / "checkpoints.sqlite")  # type: ignore[call-arg]


def bullet_lines(messages: list[BaseMessage], prefix: str) -> list[str]:
    """The bulleted prompt lines (evidence or facts) that start with `prefix` after the bullet."""
    text = "\n".join(m.text for m in messages)
    return [line[2:] for line in text.splitlines() if line.startswith(f"- {prefix}")]


def first_citation(lines: list[str], record: bool) -> str:
    return next(c for line in lines for c in citations_in(line) if is_record_citation(c) is record)


def extract_bp_and_target(messages: list[BaseMessage]) -> AIMessage:
    """Extractor: the newest blood pressure line and the first guideline passage, with their citations."""
    evidence = bullet_lines(messages, "")
    bp = next(line for line in evidence if "Blood pressure" in line and "[Observation/" in line)
    passage = next(line for line in evidence if line.startswith("[guideline:"))
    return calls(
        tool_call(
            "record_facts",
            facts=[
                {"text": bp, "citations": [first_citation([bp], record=True)]},
                {"text": passage[:200], "citations": [first_citation([passage], record=False)]},
            ],
        )
    )


def answer_from_facts(messages: list[BaseMessage]) -> AIMessage:
    """Answerer: an answer citing every fact it was given."""
    cited = [c for line in bullet_lines(messages, "") for c in citations_in(line)]
    return calls(tool_call("final_answer", answer="compared with the target", citations=cited))


async def test_ask_binds_the_cached_guideline_index_and_cites_guideline_with_record(
    settings: Settings, fhir_base_url: str, patient_ids: list[str]
) -> None:
    tools = guideline_tools(settings, None)
    assert [t.name for t in tools] == ["search_guidelines"]
    model = ScriptedChatModel(
        script=[
            calls(
                tool_call("search_record", resource_type="Observation", code=BP_PANEL, limit=3),
                tool_call("search_guidelines", query="blood pressure treatment target for adults", k=2),
            ),
            calls(tool_call(FINISH_TOOL_NAME)),
            extract_bp_and_target,
            answer_from_facts,
        ]
    )
    result = await answer_question(
        settings, fhir_base_url, model, patient_ids[0], QUESTION, None, extra_tools=tools
    )

    assert result.status == "answered", result.render()
    record = [c for c in result.citations if is_record_citation(c)]
    guideline = [c for c in result.citations if c.startswith("guideline:")]
    assert len(record) == 1 and record[0].startswith("Observation/")
    assert guideline == [f"guideline: High blood pressure in adults § {guideline[0].split(' § ')[1]}"]
    by_tool = {c: e.tool for e in result.evidence for c in e.citations}
    assert by_tool[record[0]] == "search_record" and by_tool[guideline[0]] == "search_guidelines"
    passages = [e.text for e in result.evidence if e.tool == "search_guidelines"]
    assert 1 <= len(passages) <= 2 and all(len(p) > 150 for p in passages), "passages keep their text"
    assert "130/80" in " ".join(passages), "real retrieval finds the hypertension treatment target"
    assert all(f"[{c}]" in result.answer for c in result.citations)
    assert {("tool", "search_record"), ("tool", "search_guidelines")} <= {
        (e.kind, e.name) for e in result.trace
    }


async def test_guideline_only_evidence_for_a_record_question_is_not_found(
    settings: Settings, fhir_client: FhirClient, patient_ids: list[str]
) -> None:
    model = ScriptedChatModel(
        script=[
            calls(tool_call("search_guidelines", query="blood pressure treatment target", k=1)),
            calls(tool_call(FINISH_TOOL_NAME)),
            lambda messages: calls(
                tool_call(
                    "record_facts",
                    facts=[
                        {
                            "text": "target below 130/80",
                            "citations": citations_in(bullet_lines(messages, "[guideline:")[0]),
                        }
                    ],
                )
            ),
            answer_from_facts,
        ]
    )
    graph = build_ehr_qa_graph(model, [*make_fhir_tools(fhir_client), *guideline_tools(settings, True)])
    result = await run_ehr_qa(graph, "What was the patient's most recent blood pressure?", patient_ids[0])

    assert {e.tool for e in result.evidence} == {"record_manifest", "search_guidelines"}
    assert [c for f in result.facts for c in f.citations] == [result.evidence[-1].citations[0]]
    assert (result.answer, result.citations, result.status) == (NOT_FOUND, [], "not_found")
    assert any(e.kind == "check" and e.error and "no record evidence" in e.error for e in result.trace)


def test_tool_wiring_of_the_ask_command(tmp_path: Path, settings: Settings) -> None:
    empty = Settings(cache_dir=tmp_path)  # type: ignore[call-arg]
    assert guideline_tools(empty, None) == [] and guideline_tools(settings, False) == []
    assert not (tmp_path / "guidelines.sqlite").exists(), "looking for the index does not create it"
    with pytest.raises(typer.Exit) as missing:
        guideline_tools(empty, True)
    assert missing.value.exit_code == 2
    (tmp_path / "guidelines.sqlite").write_text("not a database")
    assert guideline_tools(empty, None) == []
    with pytest.raises(typer.Exit):
        guideline_tools(empty, True)

    with image_tools(None, None) as none:
        assert none == []
    with pytest.raises(typer.Exit) as no_index, image_tools(None, tmp_path):
        pass
    assert no_index.value.exit_code == 2
    with pytest.raises(typer.Exit) as bad_index, image_tools(tmp_path / "no-index", None):
        pass
    assert bad_index.value.exit_code == 2


@pytest.fixture(scope="module")
def gemma() -> BaseChatModel:
    model = pytest.importorskip("clinicflow.model")
    settings = Settings(max_new_tokens=96)  # type: ignore[call-arg]
    return asyncio.run(asyncio.to_thread(model.load_chat_model, settings, progress=False))  # type: ignore[no-any-return]


@pytest.mark.slow
async def test_gemma_270m_runs_the_graph_with_fhir_and_guideline_tools(
    gemma: BaseChatModel, settings: Settings, fhir_client: FhirClient, patient_ids: list[str]
) -> None:
    max_steps = 1
    tools = [*make_fhir_tools(fhir_client), *guideline_tools(settings, True)]
    graph = build_ehr_qa_graph(gemma, tools, max_steps=max_steps, max_retries=0)
    result: EhrQaResult = await asyncio.wait_for(
        run_ehr_qa(graph, "What was the patient's most recent blood pressure?", patient_ids[0]), timeout=540
    )
    print("\n" + result.render())

    kinds = {e.kind for e in result.trace}
    assert {"model", "tool"} <= kinds
    assert any(e.kind == "model" and e.name == "planner" and e.tokens_in for e in result.trace)
    assert result.steps <= max_steps
    assert result.status in ("answered", "not_found", "unsupported", "failed")
    retrieved = {c for e in result.evidence for c in e.citations}
    assert set(result.citations) <= retrieved
    assert set(citations_in(result.answer)) <= retrieved
    assert result.status != "answered" or any(is_record_citation(c) for c in result.citations)
