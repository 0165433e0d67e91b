"""Turn Markdown, plain-text and PDF guidelines into chunks that keep their title and section path."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clinicflow.tools.guidelines.errors import GuidelineIngestError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "Document",
    "SkippedFile",
    "discover",
    "load_document",
    "load_documents",
    "split_words",
]

SUPPORTED_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".pdf"})
DEFAULT_MAX_WORDS = 160
NO_SECTION = "Overview"
SECTION_SEP = " > "

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_ATX_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_SETEXT = re.compile(r"^[ \t]*(=+|-+)[ \t]*$")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9(\"'])")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__|`)")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable passage: its section path, its text and, for PDFs, its 1-based page."""

    section: str
    text: str
    page: int | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """A guideline file after parsing: metadata from front matter (or the PDF) plus its chunks."""

    doc_id: str
    title: str
    path: str
    sha256: str
    chunks: tuple[Chunk, ...]
    source: str = ""
    year: int | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file that was not indexed, and why."""

    name: str
    reason: str


def discover(root: Path) -> list[Path]:
    """Supported files under `root` (or `root` itself when it is a file), sorted, hidden ones left out."""
    if root.is_file():
        return [root]
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def load_documents(
    root: Path, *, max_words: int = DEFAULT_MAX_WORDS
) -> tuple[list[Document], list[SkippedFile]]:
    """Parse every supported file under `root`; files that fail are returned as skipped with the reason."""
    documents: list[Document] = []
    skipped: list[SkippedFile] = []
    base = root if root.is_dir() else root.parent
    for path in discover(root):
        name = str(path.relative_to(base))
        try:
            documents.append(
                load_document(path, doc_id=_slug(str(Path(name).with_suffix(""))), max_words=max_words)
            )
        except GuidelineIngestError as exc:
            skipped.append(SkippedFile(name, str(exc)))
    return documents, skipped


def load_document(path: Path, *, doc_id: str | None = None, max_words: int = DEFAULT_MAX_WORDS) -> Document:
    """Parse one file by its suffix; raises `GuidelineIngestError` with the reason when it cannot be read."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise GuidelineIngestError(f"unsupported file type {suffix or '(none)'!r}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GuidelineIngestError(f"cannot read file: {exc.strerror or exc}") from exc
    doc_id = doc_id or _slug(path.stem)
    sha = hashlib.sha256(data).hexdigest()
    if suffix == ".pdf":
        return _load_pdf(path, data, doc_id, sha, max_words)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GuidelineIngestError(f"not UTF-8 text (byte {exc.start})") from exc
    meta, body = _front_matter(text)
    if suffix == ".txt":
        title, sections = _text_sections(body, meta.get("title"))
    else:
        title, sections = _markdown_sections(body, meta.get("title"))
    chunks = tuple(
        Chunk(section, piece)
        for section, section_text in sections
        for piece in split_words(section_text, max_words)
    )
    if not chunks:
        raise GuidelineIngestError("no text found")
    return Document(
        doc_id=doc_id,
        title=title or _humanize(path.stem),
        path=str(path.resolve()),
        sha256=sha,
        chunks=chunks,
        source=str(meta.get("source") or ""),
        year=_year(meta.get("year")),
        tags=_tags(meta.get("tags")),
    )


def split_words(text: str, max_words: int) -> list[str]:
    """Pack paragraphs into pieces of at most `max_words` words, splitting long paragraphs at sentences."""
    pieces: list[str] = []
    current: list[str] = []
    count = 0
    for unit in _units(text, max_words):
        n = len(unit.split())
        if current and count + n > max_words:
            pieces.append("\n".join(current))
            current, count = [], 0
        current.append(unit)
        count += n
    if current:
        pieces.append("\n".join(current))
    return pieces


def _units(text: str, max_words: int) -> Iterator[str]:
    for para in re.split(r"\n[ \t]*\n", text):
        para = para.strip()
        if not para:
            continue
        if len(para.split()) <= max_words:
            yield para
            continue
        for sentence in _SENTENCE_END.split(para):
            words = sentence.split()
            for i in range(0, len(words), max_words):
                yield " ".join(words[i : i + max_words])


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise GuidelineIngestError(f"front matter is not valid YAML: {exc}".splitlines()[0]) from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise GuidelineIngestError("front matter must be a YAML mapping")
    return meta, text[match.end() :]


def _markdown_sections(body: str, title: Any) -> tuple[str | None, list[tuple[str, str]]]:
    doc_title = str(title).strip() if title else None
    stack: list[tuple[int, str]] = []
    sections: list[tuple[str, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        text = _clean_markdown("\n".join(lines)).strip()
        if text:
            sections.append((SECTION_SEP.join(h for _, h in stack) or NO_SECTION, text))
        lines.clear()

    for line in body.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _ATX_HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        level, text = len(heading.group(1)), _clean_markdown(heading.group(2)).strip()
        flush()
        if level == 1 and not stack and (doc_title is None or text.lower() == doc_title.lower()):
            doc_title = doc_title or text
            continue
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text))
    flush()
    return doc_title, sections


def _text_sections(body: str, title: Any) -> tuple[str | None, list[tuple[str, str]]]:
    """Plain text: headings are underlined lines (=== / ---), ALL-CAPS lines or short lines ending in ':'."""
    lines = body.splitlines()
    doc_title = str(title).strip() if title else None
    if doc_title is None:
        first = next((i for i, line in enumerate(lines) if line.strip()), None)
        if first is not None and len(lines[first].strip()) <= 100 and not lines[first].rstrip().endswith("."):
            doc_title = lines[first].strip()
            del lines[first]
            if first < len(lines) and _SETEXT.match(lines[first]):
                del lines[first]
    sections: list[tuple[str, str]] = []
    heading = NO_SECTION
    buf: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        underlined = bool(line) and i + 1 < len(lines) and bool(_SETEXT.match(lines[i + 1]))
        if underlined or _is_text_heading(line):
            if "\n".join(buf).strip():
                sections.append((heading, "\n".join(buf).strip()))
            heading, buf = line.rstrip(":").strip(), []
            i += 2 if underlined else 1
            continue
        buf.append(lines[i])
        i += 1
    if "\n".join(buf).strip():
        sections.append((heading, "\n".join(buf).strip()))
    return doc_title, sections


def _is_text_heading(line: str) -> bool:
    if not line or len(line) > 80:
        return False
    letters = [c for c in line if c.isalpha()]
    if len(letters) >= 3 and all(c.isupper() for c in letters):
        return True
    return line.endswith(":") and len(line) <= 60 and not line.startswith(("-", "*"))


def _load_pdf(path: Path, data: bytes, doc_id: str, sha: str, max_words: int) -> Document:
    from io import BytesIO

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise GuidelineIngestError("PDF is encrypted")
        page_texts = [_page_text(page) for page in reader.pages]
        outline = _flatten_outline(reader)
        meta_title = reader.metadata.title if reader.metadata else None
    except GuidelineIngestError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise GuidelineIngestError(f"unreadable PDF: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
    chunks: list[Chunk] = []
    for number, text in enumerate(page_texts, start=1):
        if not text.strip():
            continue
        section = _outline_section(outline, number - 1) or f"Page {number}"
        chunks.extend(Chunk(section, piece, number) for piece in split_words(text, max_words))
    if not chunks:
        raise GuidelineIngestError("PDF has no extractable text (scanned images need OCR first)")
    title = str(meta_title).strip() if meta_title and str(meta_title).strip() else _humanize(path.stem)
    return Document(doc_id=doc_id, title=title, path=str(path.resolve()), sha256=sha, chunks=tuple(chunks))


def _page_text(page: Any) -> str:
    text = page.extract_text() or ""
    return re.sub(r"[ \t]*\n[ \t]*\n+", "\n\n", text).strip()


def _flatten_outline(reader: Any) -> list[tuple[int, tuple[str, ...]]]:
    """Outline entries as (0-based start page, title path), in reading order."""
    entries: list[tuple[int, tuple[str, ...]]] = []

    def walk(items: Iterable[Any], parents: tuple[str, ...]) -> None:
        last: tuple[str, ...] = parents
        for item in items:
            if isinstance(item, list):
                walk(item, last)
                continue
            title = str(getattr(item, "title", "") or "").strip()
            try:
                page = reader.get_destination_page_number(item)
            except Exception:
                page = None
            last = (*parents, title) if title else parents
            if page is not None and page >= 0 and title:
                entries.append((page, last))

    try:
        walk(reader.outline, ())
    except Exception:
        return []
    return entries


def _outline_section(outline: list[tuple[int, tuple[str, ...]]], page: int) -> str | None:
    """The outline path in force on `page`: the last entry starting on or before it."""
    current = None
    for start, path in sorted(outline, key=lambda entry: entry[0]):
        if start > page:
            break
        current = path
    return SECTION_SEP.join(current) if current else None


def _clean_markdown(text: str) -> str:
    return _MD_EMPHASIS.sub("", _MD_LINK.sub(r"\1", text))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "document"


def _humanize(stem: str) -> str:
    words = re.sub(r"[_\-]+", " ", stem).strip()
    return words[:1].upper() + words[1:] if words else stem


def _year(value: Any) -> int | None:
    try:
        return int(str(value)[:4]) if value is not None else None
    except ValueError:
        return None


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    return tuple(dict.fromkeys(str(t).strip().lower() for t in items if str(t).strip()))
