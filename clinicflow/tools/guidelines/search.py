"""Hybrid guideline retrieval: FTS5 BM25 and dense cosine rankings fused by reciprocal rank fusion."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict, Unpack, get_args

import numpy as np

from clinicflow.tools.guidelines.embedder import Embedder
from clinicflow.tools.guidelines.errors import GuidelineQueryError
from clinicflow.tools.guidelines.index import GuidelineIndex, SearchFilters, StoredChunk

__all__ = [
    "NO_GUIDELINES",
    "NO_MATCH",
    "AnswerOptions",
    "GuidelineSearcher",
    "Mode",
    "Passage",
    "estimate_tokens",
    "fts_query",
    "pack_passages",
    "reciprocal_rank_fusion",
    "render_passages",
]

Mode = Literal["hybrid", "bm25", "dense"]
NO_GUIDELINES = "no guidelines indexed"
NO_MATCH = "no matching guideline passages"
MAX_K = 50
MAX_QUERY_CHARS = 2000


class AnswerOptions(TypedDict, total=False):
    """The keyword options of `GuidelineSearcher.answer_with_passages`, which `answer` passes on."""

    token_budget: int
    mode: Mode
    filters: SearchFilters | None


_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be been but by can could do does for from had has have how i if in into is it "
        "its me my of on or our should so than that the their them then there these they this to was we what "
        "when where which while who whom why will with would you your",
    )
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Passage:
    """One retrieved chunk with its fused score and the rank it had in each retriever (1-based)."""

    chunk: StoredChunk
    score: float
    bm25_rank: int | None = None
    dense_rank: int | None = None

    @property
    def citation(self) -> str:
        page = f", p. {self.chunk.page}" if self.chunk.page else ""
        return f"[guideline: {self.chunk.title} § {self.chunk.section}{page}]"


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Fuse ranked id lists: score(d) = sum_i w_i / (k + rank_i(d)), 1-based ranks; ties go to best rank."""
    if weights is not None and len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[i]
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
            best[item] = min(best.get(item, rank), rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression OR-ing the query's quoted words, stopwords dropped; None for no words."""
    words = [w.lower() for w in _WORD.findall(text)]
    terms = list(dict.fromkeys(w for w in words if w not in _STOPWORDS)) or list(dict.fromkeys(words))
    return " OR ".join(f'"{t}"' for t in terms) or None


def estimate_tokens(text: str) -> int:
    """Rough token count (about four characters a token), used for the evidence budget."""
    return math.ceil(len(text) / 4)


def render_passages(passages: Sequence[Passage], token_budget: int) -> str:
    """Cited blocks, best first, within `token_budget`; the first one is trimmed rather than dropped."""
    return "\n\n".join(block for _, block in pack_passages(passages, token_budget))


def pack_passages(passages: Sequence[Passage], token_budget: int) -> list[tuple[Passage, str]]:
    """The passages that fit in `token_budget`, each with its rendered block (citation line, then text)."""
    packed: list[tuple[Passage, str]] = []
    used = 0
    for passage in passages:
        source = ", ".join(str(x) for x in (passage.chunk.source, passage.chunk.year) if x)
        head = passage.citation + (f" ({source})" if source else "")
        block = f"{head}\n{passage.chunk.text}"
        cost = estimate_tokens(block) + 1
        if used + cost <= token_budget:
            packed.append((passage, block))
            used += cost
            continue
        room = (token_budget - used - estimate_tokens(head) - 2) * 4
        if packed and room < 200:
            break
        text = ""
        for word in passage.chunk.text.split():
            if len(text) + len(word) + 2 > room:
                break
            text = f"{text} {word}" if text else word
        if text:
            packed.append((passage, f"{head}\n{text} …"))
        break
    return packed


class GuidelineSearcher:
    """Searches one guideline index; safe to share between concurrent requests."""

    def __init__(
        self,
        index: GuidelineIndex | Path,
        *,
        embedder: Embedder | None = None,
        candidates: int = 50,
        rrf_k: int = 60,
        weights: tuple[float, float] = (1.0, 1.0),
        bm25_columns: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        self.index = index if isinstance(index, GuidelineIndex) else GuidelineIndex(index, embedder)
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.weights = weights
        self.bm25_columns = bm25_columns

    def search(
        self, query: str, k: int = 5, *, mode: Mode = "hybrid", filters: SearchFilters | None = None
    ) -> list[Passage]:
        """Top-`k` passages for `query`; an empty index gives an empty list."""
        query = _check(query, k, mode)
        if self.index.chunk_count() == 0:
            return []
        depth = max(self.candidates, k)
        bm25_ids = self._bm25(query, depth, filters) if mode != "dense" else []
        dense_ids = self._dense(query, depth, filters) if mode != "bm25" else []
        bm25_rank = {cid: r for r, cid in enumerate(bm25_ids, start=1)}
        dense_rank = {cid: r for r, cid in enumerate(dense_ids, start=1)}
        if mode == "bm25":
            fused = [(cid, 1.0 / (self.rrf_k + r)) for cid, r in bm25_rank.items()]
        elif mode == "dense":
            fused = [(cid, 1.0 / (self.rrf_k + r)) for cid, r in dense_rank.items()]
        else:
            fused = reciprocal_rank_fusion([bm25_ids, dense_ids], k=self.rrf_k, weights=self.weights)
        top = fused[:k]
        chunks = self.index.fetch([cid for cid, _ in top])
        return [
            Passage(chunks[cid], score, bm25_rank.get(cid), dense_rank.get(cid))
            for cid, score in top
            if cid in chunks
        ]

    async def asearch(
        self, query: str, k: int = 5, *, mode: Mode = "hybrid", filters: SearchFilters | None = None
    ) -> list[Passage]:
        """`search` off the event loop (SQLite and the encoder block)."""
        return await asyncio.to_thread(self.search, query, k, mode=mode, filters=filters)

    def answer(self, query: str, k: int = 5, **options: Unpack[AnswerOptions]) -> str:
        """Cited passages as text under `token_budget`, or a message when nothing is indexed or matches."""
        return self.answer_with_passages(query, k, **options)[0]

    def answer_with_passages(
        self,
        query: str,
        k: int = 5,
        *,
        token_budget: int = 1200,
        mode: Mode = "hybrid",
        filters: SearchFilters | None = None,
    ) -> tuple[str, list[Passage]]:
        """Like `answer`, also returning the passages that made it into the text."""
        if token_budget < 32:
            raise GuidelineQueryError(f"token_budget must be at least 32, got {token_budget}")
        query = _check(query, k, mode)
        if self.index.chunk_count() == 0:
            return NO_GUIDELINES, []
        packed = pack_passages(self.search(query, k, mode=mode, filters=filters), token_budget)
        if not packed:
            return NO_MATCH, []
        return "\n\n".join(block for _, block in packed), [p for p, _ in packed]

    async def aanswer_with_passages(
        self, query: str, k: int = 5, **options: Unpack[AnswerOptions]
    ) -> tuple[str, list[Passage]]:
        """`answer_with_passages` off the event loop (SQLite and the encoder block)."""
        return await asyncio.to_thread(self.answer_with_passages, query, k, **options)

    def _bm25(self, query: str, depth: int, filters: SearchFilters | None) -> list[int]:
        match = fts_query(query)
        return self.index.bm25(match, depth, filters, self.bm25_columns) if match else []

    def _dense(self, query: str, depth: int, filters: SearchFilters | None) -> list[int]:
        ids, matrix = self.index.vectors()
        if filters:
            keep = np.isin(ids, self.index.allowed_ids(filters))
            ids, matrix = ids[keep], matrix[keep]
        if len(ids) == 0:
            return []
        q = self.index.embedder.encode([query])[0]
        scores = matrix @ q
        n = min(depth, len(ids))
        top = np.argpartition(-scores, n - 1)[:n] if n < len(ids) else np.arange(len(ids))
        order = sorted(top.tolist(), key=lambda i: (-float(scores[i]), int(ids[i])))
        return [int(ids[i]) for i in order]


def _check(query: str, k: int, mode: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise GuidelineQueryError("query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise GuidelineQueryError(f"query is longer than {MAX_QUERY_CHARS} characters")
    if not 1 <= k <= MAX_K:
        raise GuidelineQueryError(f"k must be between 1 and {MAX_K}, got {k}")
    if mode not in get_args(Mode):
        raise GuidelineQueryError(f"mode must be one of {', '.join(get_args(Mode))}, got {mode!r}")
    return query.strip()
