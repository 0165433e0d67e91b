"""Guideline search with the real all-MiniLM-L6-v2 encoder over the shipped starter corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clinicflow.cli.guidelines import guidelines_app
from clinicflow.tools.guidelines import (
    SHIPPED_CORPUS,
    GuidelineIndex,
    GuidelineSearcher,
    default_embedder,
    load_documents,
    make_guideline_tool,
)
from tests.unit.guidelines.helpers import pdf_with_outline


@pytest.fixture(scope="module")
def shipped_index(tmp_path_factory: pytest.TempPathFactory) -> GuidelineIndex:
    index = GuidelineIndex(tmp_path_factory.mktemp("guidelines") / "shipped.sqlite")
    report = index.index_directory(SHIPPED_CORPUS)
    assert report.skipped == []
    return index


def test_starter_corpus_is_complete_and_attributed() -> None:
    documents, skipped = load_documents(SHIPPED_CORPUS)
    assert skipped == []
    assert len(documents) >= 25
    for doc in documents:
        assert doc.source, doc.doc_id
        assert doc.year is not None, doc.doc_id
        assert doc.tags, doc.doc_id
        assert all(c.section != "Overview" for c in doc.chunks), doc.doc_id


def test_real_encoder_gives_unit_vectors_and_loads_once() -> None:
    encoder = default_embedder()
    assert default_embedder() is encoder
    vectors = encoder.encode(["sepsis fluids", "statin intensity", "sepsis fluid resuscitation"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]


@pytest.mark.parametrize(
    ("query", "doc_id", "section"),
    [
        (
            "loading dose of magnesium for a woman with eclampsia",
            "magnesium-replacement",
            "Magnesium in preeclampsia",
        ),
        (
            "how quickly may serum sodium be raised in a chronic low sodium state",
            "hyponatremia",
            "Correction limits",
        ),
        (
            "anticoagulation for atrial fibrillation in a 70 year old man with diabetes",
            "af-anticoagulation",
            None,
        ),
        ("which adults need a yearly low-dose CT of the chest", "lung-cancer-screening", "Eligibility"),
    ],
)
def test_hybrid_search_finds_the_right_guideline(
    shipped_index: GuidelineIndex, query: str, doc_id: str, section: str | None
) -> None:
    passages = GuidelineSearcher(shipped_index).search(query, 5)
    found = [(p.chunk.doc_id, p.chunk.section) for p in passages]
    if section is None:
        assert found[0][0] == doc_id
    else:
        assert (doc_id, section) in found


def test_tool_output_cites_guidelines(shipped_index: GuidelineIndex) -> None:
    tool = make_guideline_tool(shipped_index.path, token_budget=400)
    text = tool.invoke({"query": "first-line vasopressor in septic shock", "k": 3})
    assert text.startswith("[guideline: Sepsis and septic shock initial management § ")
    assert "norepinephrine" in text.lower()
    assert len(text) <= 400 * 4


def test_cli_search_prints_citations(shipped_index: GuidelineIndex) -> None:
    result = CliRunner().invoke(
        guidelines_app,
        [
            "search",
            "statin after a heart attack",
            "--k",
            "2",
            "--index",
            str(shipped_index.path),
            "--tag",
            "lipids",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("[guideline: Blood cholesterol management and statin therapy § ") == 2


def test_pdf_folder_indexed_with_real_encoder(tmp_path: Path) -> None:
    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "warfarin.pdf").write_bytes(
        pdf_with_outline(
            [
                ["Warfarin initiation", "Start 5 mg daily and check the INR after three doses."],
                ["Reversal", "For major bleeding give prothrombin complex concentrate and IV vitamin K."],
            ],
            [("Initiation", 0, None), ("Reversal of bleeding", 1, None)],
            title="Hospital warfarin protocol",
        )
    )
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.5\n1 0 obj << /Type /Catalog")
    index = GuidelineIndex(tmp_path / "pdf.sqlite")
    report = index.index_directory(folder)
    assert [s.name for s in report.skipped] == ["corrupt.pdf"]
    assert report.total_documents == 1
    top = GuidelineSearcher(index).search("reverse warfarin in a bleeding patient", 1)[0]
    assert top.citation == "[guideline: Hospital warfarin protocol § Reversal of bleeding, p. 2]"
