"""The trace every workflow keeps: one timed record per model call, tool call, approval, write or check."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, Field

__all__ = ["TraceEvent", "TraceKind", "TraceRecord", "now", "render_trace", "shorten", "trace_event"]

TraceKind = Literal["model", "tool", "check", "approval", "write"]


class TraceRecord(TypedDict):
    """One model call, tool call, approval, write or safety check, timed."""

    kind: TraceKind
    name: str
    args: dict[str, Any]
    summary: str
    started: str
    duration_ms: float
    tokens_in: int | None
    tokens_out: int | None
    error: str | None


class TraceEvent(BaseModel):
    """A `TraceRecord` as a run's result reports it."""

    kind: TraceKind
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    summary: str = ""
    started: datetime
    duration_ms: float = 0.0
    tokens_in: int | None = None
    tokens_out: int | None = None
    error: str | None = None


def now() -> str:
    """The current UTC time, ISO 8601 to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def trace_event(
    kind: str,
    name: str,
    *,
    args: dict[str, Any] | None = None,
    summary: str = "",
    started: str | None = None,
    duration_ms: float = 0.0,
    tokens_in: int | None = None,
    tokens_out: int | None = None,
    error: str | None = None,
) -> TraceRecord:
    """A trace record, started now unless told otherwise."""
    return TraceRecord(
        kind=kind,  # type: ignore[typeddict-item]
        name=name,
        args=args or {},
        summary=summary,
        started=started or now(),
        duration_ms=round(duration_ms, 2),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        error=error,
    )


def shorten(text: str, limit: int = 200) -> str:
    """The text on one line, cut to `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_trace(trace: Sequence[TraceEvent], *, kind_width: int, name_width: int) -> list[str]:
    """The trace as terminal lines under a `Trace:` heading: kind, name, time, tokens, summary, error."""
    out = ["Trace:"]
    for e in trace:
        tokens = f" in={e.tokens_in} out={e.tokens_out}" if e.tokens_in is not None else ""
        detail = " ".join(p for p in (e.summary, f"ERROR {e.error}" if e.error else "") if p)
        out.append(f"  {e.kind:{kind_width}} {e.name:{name_width}} {e.duration_ms:9.1f} ms{tokens}  {detail}")
    return out
