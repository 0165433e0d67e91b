"""Lines under a token budget: `render_lines`, newest first, saying how many were left out."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .references import References
from .resources import render_resource
from .values import Resource, resource_date

__all__ = ["estimate_tokens", "render_lines"]


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token estimate (about four characters per token)."""
    return math.ceil(len(text) / 4)


def _newest_first(resources: Iterable[Resource]) -> list[Resource]:
    dated = [(resource_date(r) or "", i, r) for i, r in enumerate(resources)]
    dated.sort(key=lambda item: item[1])
    dated.sort(key=lambda item: item[0], reverse=True)
    return [r for _, _, r in dated]


def render_lines(
    resources: Iterable[Resource],
    token_budget: int,
    *,
    refs: References | None = None,
    total: int | None = None,
    hint: str = "narrow by code or date",
) -> str:
    """Cited lines, newest first, stopping before `token_budget` is passed; states how many were left out.

    `total` is the number of matches when `resources` is already a cut of them (the rest count as omitted).
    """
    ordered = _newest_first(resources)
    total = max(total if total is not None else 0, len(ordered))
    lines: list[str] = []
    used = 0
    for resource in ordered:
        line = render_resource(resource, refs)
        remaining = total - len(lines) - 1
        reserve = estimate_tokens(f"… {remaining} more not shown; {hint}") + 1 if remaining else 0
        cost = estimate_tokens(line) + 1
        if used + cost + reserve > token_budget:
            break
        lines.append(line)
        used += cost
    omitted = total - len(lines)
    if omitted:
        lines.append(f"… {omitted} more not shown; {hint}")
    return "\n".join(lines)
