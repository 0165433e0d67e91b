"""Text a run can keep: checkpoints and the run store live in SQLite or Postgres, and Postgres text (and
JSONB) cannot hold the NUL character, nor can any UTF-8 store hold a lone surrogate (`\\ud800` in JSON)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["unstorable_character", "unstorable_strings"]


def unstorable_character(text: str) -> str | None:
    """Why `text` cannot be stored (naming the first bad character and its position), or None."""
    for position, char in enumerate(text):
        if char == "\x00":
            return f"contains a NUL character (U+0000) at position {position}, which cannot be stored"
        if "\ud800" <= char <= "\udfff":
            return (
                f"contains a lone surrogate (U+{ord(char):04X}) at position {position}, which is not "
                "valid Unicode text"
            )
    return None


def unstorable_strings(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(location, reason) of every string, dict key included, in a JSON-like value that cannot be stored."""
    if isinstance(value, str):
        reason = unstorable_character(value)
        if reason is not None:
            yield path, reason
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (reason := unstorable_character(key)) is not None:
                yield (*path, key), f"key {reason}"
            yield from unstorable_strings(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from unstorable_strings(item, (*path, index))
