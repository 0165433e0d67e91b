"""Clinical guideline search: ingest Markdown/text/PDF, index in SQLite (FTS5 + vectors), hybrid retrieval."""

from clinicflow.tools.guidelines.embedder import Embedder, MiniLMEmbedder, default_embedder
from clinicflow.tools.guidelines.errors import (
    GuidelineError,
    GuidelineIndexError,
    GuidelineIngestError,
    GuidelineQueryError,
)
from clinicflow.tools.guidelines.index import (
    SHIPPED_CORPUS,
    GuidelineIndex,
    IndexReport,
    SearchFilters,
    StoredChunk,
    default_index_path,
    indexed_guidelines,
)
from clinicflow.tools.guidelines.ingest import Chunk, Document, SkippedFile, load_document, load_documents
from clinicflow.tools.guidelines.search import (
    NO_GUIDELINES,
    NO_MATCH,
    GuidelineSearcher,
    Mode,
    Passage,
    reciprocal_rank_fusion,
    render_passages,
)
from clinicflow.tools.guidelines.tool import make_guideline_tool

__all__ = [
    "NO_GUIDELINES",
    "NO_MATCH",
    "SHIPPED_CORPUS",
    "Chunk",
    "Document",
    "Embedder",
    "GuidelineError",
    "GuidelineIndex",
    "GuidelineIndexError",
    "GuidelineIngestError",
    "GuidelineQueryError",
    "GuidelineSearcher",
    "IndexReport",
    "MiniLMEmbedder",
    "Mode",
    "Passage",
    "SearchFilters",
    "SkippedFile",
    "StoredChunk",
    "default_embedder",
    "default_index_path",
    "indexed_guidelines",
    "load_document",
    "load_documents",
    "make_guideline_tool",
    "reciprocal_rank_fusion",
    "render_passages",
]
