"""Whether a resource matches a query: its codes, its date, and the words of its text."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..manifest import resource_codings
from ..render import resource_date
from .query import RecordQuery

__all__ = ["contains_words", "matches_code_and_dates", "matches_text"]

_TEXT_KEYS = frozenset({"display", "text", "valueString", "conclusion", "description", "title"})


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^\w]+", text.casefold()) if w]


def contains_words(haystack: str, query: str) -> bool:
    """Whether every word of `query` is in `haystack` (any case, as substrings)."""
    folded = haystack.casefold()
    return all(word in folded for word in _words(query))


def _collect_text(node: Any, out: list[str]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in _TEXT_KEYS and isinstance(value, str):
                out.append(value)
            elif not (key in ("text", "content") and isinstance(value, Mapping)):
                _collect_text(value, out)
    elif isinstance(node, list):
        for item in node:
            _collect_text(item, out)


def _searchable_text(resource: Mapping[str, Any]) -> str:
    out: list[str] = []
    _collect_text(resource, out)
    return " ".join(out)


def _code_matches(resource: Mapping[str, Any], query: RecordQuery) -> bool:
    codings = resource_codings(resource)
    if query.code is not None:
        return any(
            str(c.get("code")) == query.code and (query.system is None or c.get("system") == query.system)
            for c in codings
        )
    if query.code_text is not None:
        return contains_words(" ".join(str(c.get("display") or "") for c in codings), query.code_text)
    return True


def _in_dates(resource: Mapping[str, Any], query: RecordQuery) -> bool:
    if not (query.date_from or query.date_to):
        return True
    day = (resource_date(resource) or "")[:10]
    if not day:
        return False
    return (query.date_from or "") <= day <= (query.date_to or "9999-12-31")


def matches_code_and_dates(resource: Mapping[str, Any], query: RecordQuery) -> bool:
    """Whether one of the resource's codings is the query's code (or its display has the query's words)
    and its date lies in the query's dates."""
    return _code_matches(resource, query) and _in_dates(resource, query)


def matches_text(resource: Mapping[str, Any], text: str, rendered: str) -> bool:
    """Whether every word of `text` is in the resource's text fields or its rendered line."""
    return contains_words(f"{_searchable_text(resource)} {rendered}", text)
