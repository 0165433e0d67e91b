"""Errors raised by guideline ingestion, indexing and search.

GuidelineError
 ├── GuidelineQueryError   bad arguments from the caller (empty query, k out of range, unknown mode)
 ├── GuidelineIngestError  one file cannot be read as a guideline (indexing skips it and says why)
 └── GuidelineIndexError   the index file is unusable (not a guideline index, other encoder, unreadable)
"""

from __future__ import annotations

__all__ = ["GuidelineError", "GuidelineIndexError", "GuidelineIngestError", "GuidelineQueryError"]


class GuidelineError(Exception):
    """Base of every guideline search error."""


class GuidelineQueryError(GuidelineError, ValueError):
    """The caller's arguments are invalid; the message says which and why."""


class GuidelineIndexError(GuidelineError):
    """The index cannot be opened or does not match the encoder; the message names the path."""


class GuidelineIngestError(GuidelineError):
    """A file could not be turned into a guideline document; the message is the reason."""
