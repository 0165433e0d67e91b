"""One SQLite file per guideline index: documents, chunks, an FTS5 (BM25) table and float32 chunk vectors."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clinicflow.settings import Settings
from clinicflow.tools.guidelines.embedder import Embedder, default_embedder
from clinicflow.tools.guidelines.errors import GuidelineIndexError, GuidelineQueryError
from clinicflow.tools.guidelines.ingest import (
    DEFAULT_MAX_WORDS,
    Document,
    SkippedFile,
    load_documents,
)

__all__ = ["SHIPPED_CORPUS", "GuidelineIndex", "IndexReport", "SearchFilters", "StoredChunk"]

SHIPPED_CORPUS = Path(__file__).resolve().parent / "corpus"
SCHEMA_VERSION = "1"
_ENCODE_SLICE = 64  # passages encoded between two progress reports

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL,
    title TEXT NOT NULL,
    source TEXT NOT NULL,
    year INTEGER,
    tags TEXT NOT NULL,
    fingerprint TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    section TEXT NOT NULL,
    page INTEGER,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE TABLE IF NOT EXISTS vectors (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    vector BLOB NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    title, section, text, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Optional restrictions: one document (id or title), a section path prefix, tags that must all match."""

    document: str | None = None
    section_prefix: str | None = None
    tags: tuple[str, ...] = ()

    def sql(self) -> tuple[str, list[object]]:
        """A WHERE fragment over `chunks c JOIN documents d`, with its parameters."""
        clauses: list[str] = []
        params: list[object] = []
        if self.document:
            clauses.append("(d.doc_id = ? OR lower(d.title) = lower(?))")
            params += [self.document, self.document]
        if self.section_prefix:
            escaped = self.section_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("c.section LIKE ? ESCAPE '\\'")
            params.append(escaped + "%")
        for tag in self.tags:
            clauses.append("EXISTS (SELECT 1 FROM json_each(d.tags) WHERE value = ?)")
            params.append(tag.strip().lower())
        return (" AND ".join(clauses) or "1"), params

    def __bool__(self) -> bool:
        return bool(self.document or self.section_prefix or self.tags)


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk read back from the index with its document's metadata."""

    chunk_id: int
    doc_id: str
    title: str
    section: str
    page: int | None
    text: str
    source: str
    year: int | None


@dataclass(slots=True)
class IndexReport:
    """What one indexing run did: documents (re)indexed, left unchanged, skipped with reasons, and totals."""

    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    chunks_added: int = 0
    total_documents: int = 0
    total_chunks: int = 0

    def summary(self) -> str:
        lines = [
            f"indexed {len(self.indexed)} document(s) ({self.chunks_added} chunks), "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped; "
            f"index holds {self.total_documents} document(s), {self.total_chunks} chunks"
        ]
        lines += [f"skipped {s.name}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def _insert_document(conn: sqlite3.Connection, doc: Document, fingerprint: str, vectors: np.ndarray) -> None:
    """One document's row, and a chunk, full-text and vector row for each of its passages."""
    cur = conn.execute(
        "INSERT INTO documents (path, doc_id, title, source, year, tags, fingerprint)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (doc.path, doc.doc_id, doc.title, doc.source, doc.year, json.dumps(list(doc.tags)), fingerprint),
    )
    document_id = cur.lastrowid
    for ordinal, (chunk, vector) in enumerate(zip(doc.chunks, vectors, strict=True)):
        cur = conn.execute(
            "INSERT INTO chunks (document_id, ordinal, section, page, text) VALUES (?, ?, ?, ?, ?)",
            (document_id, ordinal, chunk.section, chunk.page, chunk.text),
        )
        chunk_id = cur.lastrowid
        conn.execute(
            "INSERT INTO chunks_fts (rowid, title, section, text) VALUES (?, ?, ?, ?)",
            (chunk_id, doc.title, chunk.section, chunk.text),
        )
        conn.execute(
            "INSERT INTO vectors VALUES (?, ?)",
            (chunk_id, np.ascontiguousarray(vector, dtype=np.float32).tobytes()),
        )


def _fingerprint(doc: Document) -> str:
    h = hashlib.sha256(doc.sha256.encode())
    for chunk in doc.chunks:
        h.update(f"\x00{chunk.section}\x00{chunk.page}\x00{chunk.text}".encode())
    return h.hexdigest()


def embedding_text(title: str, section: str, text: str) -> str:
    """What the encoder sees for a chunk: its title and section path, then its text."""
    return f"{title} — {section}\n{text}"


class GuidelineIndex:
    """A guideline index in one SQLite file; the encoder is only loaded when vectors are needed."""

    def __init__(self, path: Path, embedder: Embedder | None = None) -> None:
        self.path = Path(path)
        self._embedder = embedder
        self._cache_lock = threading.Lock()
        self._vector_cache: tuple[str, np.ndarray, np.ndarray] | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as exc:
            raise GuidelineIndexError(f"cannot open guideline index {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            if write:
                conn.executescript(_SCHEMA)
                self._check_meta(conn, creating=True)
            yield conn
            conn.commit()
        except sqlite3.DatabaseError as exc:
            conn.rollback()
            raise GuidelineIndexError(f"{self.path} is not a usable guideline index: {exc}") from exc
        finally:
            conn.close()

    def _check_meta(self, conn: sqlite3.Connection, *, creating: bool = False) -> dict[str, str]:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if not meta and creating:
            meta = {"schema": SCHEMA_VERSION, "generation": "0"}
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        if meta.get("schema") != SCHEMA_VERSION:
            raise GuidelineIndexError(
                f"{self.path} is not a guideline index of schema {SCHEMA_VERSION}; rebuild it"
            )
        return meta

    def _check_encoder(self, meta: dict[str, str]) -> None:
        name = meta.get("encoder")
        if name and (name != self.embedder.name or int(meta.get("dim", "0")) != self.embedder.dim):
            raise GuidelineIndexError(
                f"{self.path} was built with encoder {name} ({meta.get('dim')}-d), not "
                f"{self.embedder.name} ({self.embedder.dim}-d); rebuild the index"
            )

    def _readable(self) -> bool:
        if not self.path.exists():
            return False
        with self._connect() as conn:
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone()
            if not has_meta:
                raise GuidelineIndexError(f"{self.path} is not a guideline index")
            self._check_meta(conn)
        return True

    def chunk_count(self) -> int:
        """Number of chunks indexed; 0 when the file does not exist yet."""
        if not self._readable():
            return 0
        with self._connect() as conn:
            return int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def document_count(self) -> int:
        if not self._readable():
            return 0
        with self._connect() as conn:
            return int(conn.execute("SELECT count(*) FROM documents").fetchone()[0])

    def index_directory(
        self,
        root: Path,
        *,
        rebuild: bool = False,
        max_words: int = DEFAULT_MAX_WORDS,
        progress: Callable[[int, int], None] | None = None,
    ) -> IndexReport:
        """Index every supported file under `root` (a folder or one file); unreadable files are skipped.
        `progress(done, total)` is called as passages are encoded."""
        if not root.exists():
            raise GuidelineQueryError(f"no such file or folder: {root}")
        documents, skipped = load_documents(root, max_words=max_words)
        return self.add_documents(documents, skipped=skipped, rebuild=rebuild, progress=progress)

    def add_documents(
        self,
        documents: Sequence[Document],
        *,
        skipped: Sequence[SkippedFile] = (),
        rebuild: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> IndexReport:
        """Insert or replace documents (matched by file path); unchanged ones are not re-encoded."""
        report = IndexReport(skipped=list(skipped))
        with self._connect(write=True) as conn:
            meta = self._check_meta(conn)
            if rebuild:
                conn.execute("DELETE FROM chunks_fts")
                conn.execute("DELETE FROM documents")
                conn.execute("DELETE FROM meta WHERE key IN ('encoder', 'dim')")
                meta.pop("encoder", None)
            self._check_encoder(meta)
            known = dict(conn.execute("SELECT path, fingerprint FROM documents").fetchall())
        todo: list[tuple[Document, str]] = []
        for doc in documents:
            fp = _fingerprint(doc)
            if known.get(doc.path) == fp:
                report.unchanged.append(doc.doc_id)
            else:
                todo.append((doc, fp))
        texts = [embedding_text(d.title, c.section, c.text) for d, _ in todo for c in d.chunks]
        vectors = self._encode(texts, progress)
        with self._connect(write=True) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [("encoder", self.embedder.name), ("dim", str(self.embedder.dim))],
            )
            row = 0
            for doc, fp in todo:
                self._delete_path(conn, doc.path)
                _insert_document(conn, doc, fp, vectors[row : row + len(doc.chunks)])
                row += len(doc.chunks)
                report.indexed.append(doc.doc_id)
                report.chunks_added += len(doc.chunks)
            if todo or rebuild:
                conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            report.total_documents = int(conn.execute("SELECT count(*) FROM documents").fetchone()[0])
            report.total_chunks = int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
        return report

    def _encode(self, texts: Sequence[str], progress: Callable[[int, int], None] | None) -> np.ndarray:
        """The passages' vectors, encoded in slices so that `progress` can follow."""
        slices = []
        for start in range(0, len(texts), _ENCODE_SLICE):
            slices.append(self.embedder.encode(texts[start : start + _ENCODE_SLICE]))
            if progress is not None:
                progress(min(start + _ENCODE_SLICE, len(texts)), len(texts))
        return np.concatenate(slices) if slices else np.zeros((0, self.embedder.dim), np.float32)

    @staticmethod
    def _delete_path(conn: sqlite3.Connection, path: str) -> None:
        conn.execute(
            "DELETE FROM chunks_fts WHERE rowid IN"
            " (SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.path = ?)",
            (path,),
        )
        conn.execute("DELETE FROM documents WHERE path = ?", (path,))

    def bm25(
        self,
        match: str,
        limit: int,
        filters: SearchFilters | None = None,
        weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> list[int]:
        """Chunk ids ranked by BM25 for an FTS5 MATCH expression; weights are for (title, section, text)."""
        where, params = (filters or SearchFilters()).sql()
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT c.id FROM chunks_fts f JOIN chunks c ON c.id = f.rowid"
                " JOIN documents d ON d.id = c.document_id"
                f" WHERE chunks_fts MATCH ? AND {where}"
                " ORDER BY bm25(chunks_fts, ?, ?, ?), c.id LIMIT ?",
                [match, *params, *weights, limit],
            ).fetchall()
        return [int(r[0]) for r in rows]

    def allowed_ids(self, filters: SearchFilters) -> np.ndarray:
        """Chunk ids that pass `filters`, sorted."""
        where, params = filters.sql()
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id"
                f" WHERE {where} ORDER BY c.id",
                params,
            ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, unit vectors) of the whole index, read once per index generation and kept in memory."""
        with self._connect() as conn:
            meta = self._check_meta(conn)
            self._check_encoder(meta)
            generation = meta.get("generation", "0")
            with self._cache_lock:
                if self._vector_cache and self._vector_cache[0] == generation:
                    return self._vector_cache[1], self._vector_cache[2]
                rows = conn.execute("SELECT chunk_id, vector FROM vectors ORDER BY chunk_id").fetchall()
                dim = int(meta.get("dim", "0") or 0)
                ids = np.array([r[0] for r in rows], dtype=np.int64)
                matrix = (
                    np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
                    if rows
                    else np.zeros((0, dim), dtype=np.float32)
                )
                self._vector_cache = (generation, ids, matrix)
                return ids, matrix

    def fetch(self, chunk_ids: Sequence[int]) -> dict[int, StoredChunk]:
        """Chunks with their document metadata, by id."""
        if not chunk_ids:
            return {}
        marks = ",".join("?" * len(chunk_ids))
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT c.id, d.doc_id, d.title, c.section, c.page, c.text, d.source, d.year"
                f" FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks})",
                [int(i) for i in chunk_ids],
            ).fetchall()
        return {int(r[0]): StoredChunk(*r) for r in rows}


def default_index_path(settings: Settings | None = None) -> Path:
    """Where the guideline index lives unless a command is told otherwise."""
    return (settings or Settings()).cache_dir / "guidelines.sqlite"  # type: ignore[call-arg]


def indexed_guidelines(path: Path) -> Path | None:
    """`path` when it is a readable index holding documents; None otherwise (nothing to search)."""
    from clinicflow.tools.guidelines.errors import GuidelineError

    try:
        return path if path.exists() and GuidelineIndex(path).document_count() else None
    except GuidelineError:
        return None
