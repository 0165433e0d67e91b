"""Index and hybrid search logic, with a deterministic fake encoder in place of MiniLM."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from clinicflow.tools.guidelines import (
    NO_GUIDELINES,
    GuidelineIndex,
    GuidelineIndexError,
    GuidelineQueryError,
    GuidelineSearcher,
    SearchFilters,
    reciprocal_rank_fusion,
    render_passages,
)
from clinicflow.tools.guidelines.search import estimate_tokens, fts_query
from tests.unit.guidelines.helpers import HashEmbedder

DOCS = {
    "potassium.md": """---
title: Potassium replacement
source: Example Electrolyte Protocol
year: 2023
tags: [electrolytes]
---
## Oral replacement

Oral potassium chloride 20 to 40 mEq two to four times a day.

## Intravenous replacement

Peripheral infusion no faster than 10 mEq per hour; central line up to 20 mEq per hour.
""",
    "sepsis.md": """---
title: Sepsis bundle
source: Example Sepsis Campaign
year: 2021
tags: [critical-care, infection]
---
## Fluids

Give 30 mL/kg crystalloid for hypotension or lactate of 4 mmol/L or more.

## Antibiotics

Broad-spectrum antibiotics within one hour for septic shock.
""",
    "af.md": """---
title: Atrial fibrillation anticoagulation
source: Example Cardiology Society
year: 2023
tags: [cardiology]
---
## Risk score

CHA2DS2-VASc counts heart failure, hypertension, age, diabetes, stroke, vascular disease and sex.

## Anticoagulant choice

Direct oral anticoagulants are preferred over warfarin except with mechanical valves.
""",
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def index(tmp_path: Path, corpus: Path, embedder: HashEmbedder) -> GuidelineIndex:
    idx = GuidelineIndex(tmp_path / "g.sqlite", embedder)
    idx.index_directory(corpus)
    return idx


def test_rrf_matches_hand_computed_scores() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], k=60)
    expected = {
        1: 1 / 61 + 1 / 62,
        3: 1 / 63 + 1 / 61,
        2: 1 / 62,
        4: 1 / 63,
    }
    assert [item for item, _ in fused] == [1, 3, 2, 4]
    for item, score in fused:
        assert score == pytest.approx(expected[item])


def test_rrf_breaks_ties_by_best_rank_and_applies_weights() -> None:
    assert [i for i, _ in reciprocal_rank_fusion([[7, 8], [8, 7]], k=60)] == [7, 8]
    weighted = reciprocal_rank_fusion([[1, 2], [2, 1]], k=60, weights=[1.0, 2.0])
    assert [i for i, _ in weighted] == [2, 1]
    assert weighted[0][1] == pytest.approx(1 / 62 + 2 / 61)
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1]], weights=[1.0, 1.0])


def test_fts_query_quotes_terms_and_drops_stopwords() -> None:
    assert fts_query('What is the "CHA2DS2-VASc" NOT score?') == '"cha2ds2" OR "vasc" OR "not" OR "score"'
    assert fts_query("what is it") == '"what" OR "is" OR "it"'
    assert fts_query("?!") is None


def test_missing_or_empty_index_answers_no_guidelines(tmp_path: Path, embedder: HashEmbedder) -> None:
    missing = GuidelineSearcher(tmp_path / "none.sqlite", embedder=embedder)
    assert missing.answer("sepsis fluids") == NO_GUIDELINES
    assert missing.search("sepsis fluids") == []
    assert not (tmp_path / "none.sqlite").exists()
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    idx = GuidelineIndex(tmp_path / "empty.sqlite", embedder)
    report = idx.index_directory(empty_dir)
    assert report.total_chunks == 0
    assert GuidelineSearcher(idx).answer("sepsis fluids") == NO_GUIDELINES
    assert embedder.encoded == 0


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_each_mode_finds_the_right_section(index: GuidelineIndex, mode: str) -> None:
    passages = GuidelineSearcher(index).search("peripheral potassium infusion rate per hour", 3, mode=mode)  # type: ignore[arg-type]
    assert passages[0].chunk.doc_id == "potassium"
    assert passages[0].chunk.section == "Intravenous replacement"
    assert passages[0].citation == "[guideline: Potassium replacement § Intravenous replacement]"


def test_hybrid_records_both_ranks(index: GuidelineIndex) -> None:
    top = GuidelineSearcher(index).search("crystalloid for lactate and hypotension", 2)[0]
    assert top.chunk.section == "Fluids"
    assert top.bm25_rank == 1
    assert top.dense_rank is not None


def test_filters_restrict_documents_sections_and_tags(index: GuidelineIndex) -> None:
    searcher = GuidelineSearcher(index)
    by_doc = searcher.search(
        "replacement antibiotics anticoagulant", 10, filters=SearchFilters(document="af")
    )
    assert {p.chunk.doc_id for p in by_doc} == {"af"}
    by_title = searcher.search("warfarin", 10, filters=SearchFilters(document="sepsis bundle"))
    assert {p.chunk.doc_id for p in by_title} == {"sepsis"}
    by_section = searcher.search("potassium", 10, filters=SearchFilters(section_prefix="oral"))
    assert [p.chunk.section for p in by_section] == ["Oral replacement"]
    by_tag = searcher.search("hour", 10, mode="dense", filters=SearchFilters(tags=("critical-care",)))
    assert {p.chunk.doc_id for p in by_tag} == {"sepsis"}
    none = searcher.search("hour", 10, filters=SearchFilters(tags=("critical-care", "cardiology")))
    assert none == []


def test_reindexing_skips_unchanged_and_replaces_changed(
    tmp_path: Path, corpus: Path, index: GuidelineIndex, embedder: HashEmbedder
) -> None:
    before = embedder.encoded
    report = index.index_directory(corpus)
    assert sorted(report.unchanged) == ["af", "potassium", "sepsis"]
    assert embedder.encoded == before
    (corpus / "af.md").write_text(DOCS["af.md"].replace("mechanical valves", "mechanical heart valves"))
    report = index.index_directory(corpus)
    assert report.indexed == ["af"]
    assert report.total_documents == 3
    assert report.total_chunks == 6
    hits = GuidelineSearcher(index).search("mechanical heart valves", 1, mode="bm25")
    assert "mechanical heart valves" in hits[0].chunk.text
    with sqlite3.connect(index.path) as conn:
        assert conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0] == 6
        assert conn.execute("SELECT count(*) FROM vectors").fetchone()[0] == 6


def test_unreadable_pdf_skipped_and_rest_indexed(
    tmp_path: Path, corpus: Path, embedder: HashEmbedder
) -> None:
    (corpus / "scanned.pdf").write_bytes(b"%PDF-1.7\n%%EOF")
    report = GuidelineIndex(tmp_path / "x.sqlite", embedder).index_directory(corpus)
    assert [(s.name, s.reason.split(":")[0]) for s in report.skipped] == [("scanned.pdf", "unreadable PDF")]
    assert report.total_documents == 3
    assert "skipped scanned.pdf: unreadable PDF" in report.summary()


def test_rebuild_empties_the_index(tmp_path: Path, index: GuidelineIndex) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "one.md").write_text("## Only\n\nsingle document\n")
    report = index.index_directory(other, rebuild=True)
    assert report.total_documents == 1
    assert GuidelineSearcher(index).search("potassium", 5, mode="bm25") == []


def test_index_built_with_another_encoder_is_refused(tmp_path: Path, index: GuidelineIndex) -> None:
    class OtherEmbedder(HashEmbedder):
        name = "other-encoder"

    searcher = GuidelineSearcher(index.path, embedder=OtherEmbedder())
    with pytest.raises(GuidelineIndexError, match="other-encoder"):
        searcher.search("potassium", 3, mode="dense")
    assert searcher.search("potassium", 3, mode="bm25")


def test_non_index_files_name_their_path(tmp_path: Path, embedder: HashEmbedder) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(GuidelineIndexError, match=r"junk\.sqlite"):
        GuidelineSearcher(junk, embedder=embedder).answer("x")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(GuidelineIndexError, match=r"other\.sqlite"):
        GuidelineSearcher(other, embedder=embedder).answer("x")


@pytest.mark.parametrize(
    ("query", "k", "mode", "message"),
    [("  ", 5, "hybrid", "non-empty"), ("x", 0, "hybrid", "k must"), ("x", 5, "fuzzy", "mode must")],
)
def test_bad_arguments_raise_query_errors(
    index: GuidelineIndex, query: str, k: int, mode: str, message: str
) -> None:
    with pytest.raises(GuidelineQueryError, match=message):
        GuidelineSearcher(index).search(query, k, mode=mode)  # type: ignore[arg-type]


def test_answer_respects_the_token_budget(index: GuidelineIndex) -> None:
    searcher = GuidelineSearcher(index)
    passages = searcher.search("potassium sepsis anticoagulant", 6)
    full = render_passages(passages, 10_000)
    assert full.count("[guideline:") == 6
    small = searcher.answer("potassium sepsis anticoagulant", 6, token_budget=60)
    assert estimate_tokens(small) <= 60
    assert small.count("[guideline:") >= 1
    assert small.startswith(passages[0].citation)
    tiny = render_passages(passages, 32)
    assert tiny.startswith(passages[0].citation)
    assert tiny.endswith("…")


async def test_async_search_matches_sync(index: GuidelineIndex) -> None:
    searcher = GuidelineSearcher(index)
    sync = searcher.search("warfarin mechanical valves", 3)
    async_ = await searcher.asearch("warfarin mechanical valves", 3)
    assert [p.chunk.chunk_id for p in async_] == [p.chunk.chunk_id for p in sync]
