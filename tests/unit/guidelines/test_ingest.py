"""Ingestion: Markdown, plain text and PDF become chunks that keep their title and section path."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicflow.tools.guidelines import GuidelineIngestError, load_document, load_documents
from clinicflow.tools.guidelines.ingest import split_words
from tests.unit.guidelines.helpers import minimal_pdf, pdf_with_outline

MARKDOWN = """---
title: Potassium replacement
source: Example Society 2023
year: 2023
tags: [Electrolytes, potassium]
---

Intro paragraph before any heading.

## Oral replacement

Give 20 to 40 mEq by mouth.

### Renal impairment

Halve the dose and recheck.

```
# not a heading inside a code fence
```

## Intravenous replacement

No faster than 10 mEq per hour peripherally.
"""


def test_markdown_chunks_keep_title_and_section_path(tmp_path: Path) -> None:
    path = tmp_path / "potassium.md"
    path.write_text(MARKDOWN)
    doc = load_document(path)
    assert doc.title == "Potassium replacement"
    assert doc.source == "Example Society 2023"
    assert doc.year == 2023
    assert doc.tags == ("electrolytes", "potassium")
    assert doc.doc_id == "potassium"
    sections = [c.section for c in doc.chunks]
    assert sections == [
        "Overview",
        "Oral replacement",
        "Oral replacement > Renal impairment",
        "Intravenous replacement",
    ]
    renal = doc.chunks[2]
    assert "Halve the dose" in renal.text
    assert "# not a heading" in renal.text
    assert all(c.page is None for c in doc.chunks)


def test_markdown_h1_becomes_title_without_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "sepsis_guide.md"
    path.write_text("# Sepsis guide\n\n## Fluids\n\nGive **30 mL/kg** of [crystalloid](http://x).\n")
    doc = load_document(path)
    assert doc.title == "Sepsis guide"
    assert [(c.section, c.text) for c in doc.chunks] == [("Fluids", "Give 30 mL/kg of crystalloid.")]


def test_long_sections_split_without_losing_their_section(tmp_path: Path) -> None:
    sentences = " ".join(f"Sentence number {i} says something." for i in range(60))
    path = tmp_path / "long.md"
    path.write_text(f"## Dosing\n\n{sentences}\n")
    doc = load_document(path, max_words=50)
    assert len(doc.chunks) > 1
    assert {c.section for c in doc.chunks} == {"Dosing"}
    assert all(len(c.text.split()) <= 50 for c in doc.chunks)
    assert " ".join(c.text for c in doc.chunks).split() == sentences.split()


def test_split_words_packs_paragraphs() -> None:
    assert split_words("one two\n\nthree four\n\nfive", 4) == ["one two\nthree four", "five"]


def test_plain_text_headings_and_title(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(
        "Anticoagulation notes\n\nBACKGROUND\nWarfarin needs INR checks.\n\n"
        "Targets:\nINR 2.0 to 3.0 for most indications.\n\nReversal\n========\nGive vitamin K.\n"
    )
    doc = load_document(path)
    assert doc.title == "Anticoagulation notes"
    assert [c.section for c in doc.chunks] == ["BACKGROUND", "Targets", "Reversal"]
    assert doc.chunks[1].text == "INR 2.0 to 3.0 for most indications."


def test_pdf_pages_and_outline_become_sections(tmp_path: Path) -> None:
    path = tmp_path / "drug-x.pdf"
    path.write_bytes(
        pdf_with_outline(
            [["Dosing", "Give 5 mg daily with food."], ["Monitoring", "Check drug levels every week."]],
            [("Dosing", 0, None), ("Monitoring", 1, None), ("Weekly checks", 1, "Monitoring")],
            title="Drug X prescribing guide",
        )
    )
    doc = load_document(path)
    assert doc.title == "Drug X prescribing guide"
    assert [(c.section, c.page) for c in doc.chunks] == [("Dosing", 1), ("Monitoring > Weekly checks", 2)]
    assert "5 mg daily" in doc.chunks[0].text


def test_pdf_without_outline_uses_pages_and_file_name(tmp_path: Path) -> None:
    path = tmp_path / "renal_dosing.pdf"
    path.write_bytes(minimal_pdf([["Page one text about dosing."], [], ["Third page text."]]))
    doc = load_document(path)
    assert doc.title == "Renal dosing"
    assert [(c.section, c.page) for c in doc.chunks] == [("Page 1", 1), ("Page 3", 3)]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4\nthis is not really a pdf", "unreadable PDF"),
        ("empty.pdf", b"", "unreadable PDF"),
        ("latin1.md", "Caf\xe9 guidance".encode("latin-1"), "not UTF-8"),
        ("bad-front.md", b"---\ntitle: [unclosed\n---\n## A\n\ntext\n", "front matter"),
        ("blank.md", b"---\ntitle: Nothing\n---\n\n", "no text"),
        ("scan.pdf", minimal_pdf([[], []]), "no extractable text"),
    ],
)
def test_unreadable_files_raise_with_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(GuidelineIngestError, match=reason):
        load_document(path)


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(pdf_with_outline([["Secret text."]], password="s3cret"))
    with pytest.raises(GuidelineIngestError, match="encrypted"):
        load_document(path)


def test_load_documents_skips_bad_files_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "good.md").write_text("## A\n\nalpha text\n")
    (tmp_path / "sub" / "good.txt").write_text("Title line\n\nbody text\n")
    (tmp_path / "sub" / "bad.pdf").write_bytes(b"garbage")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.md").write_text("## H\n\nhidden\n")
    documents, skipped = load_documents(tmp_path)
    assert sorted(d.doc_id for d in documents) == ["good", "sub-good"]
    assert [s.name for s in skipped] == [str(Path("sub") / "bad.pdf")]
    assert skipped[0].reason.startswith("unreadable PDF")
