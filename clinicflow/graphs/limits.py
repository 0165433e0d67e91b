"""The bounds of one run, through LangGraph's own mechanisms.

`RunLimits` is each graph's run context (`context_schema`): a graph is built with default limits, and a
run may pass its own as `context=RunLimits(...)`. `max_steps` bounds the model calls a run makes (the
`steps` every result reports; a retry after an invalid reply counts too), `max_retries` the invalid
replies in a row a role may retry.

LangGraph's superstep bound (the recursion limit) stays a safety net sized from the defaults; each graph
reads its managed `RemainingSteps` and ends the run with what it has before reaching that bound, so a run
given more steps than its graph allows stops with a `step limit` error, never with GraphRecursionError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RunLimits", "out_of_supersteps"]


@dataclass(frozen=True)
class RunLimits:
    """At most `max_steps` model calls per run, and `max_retries` retries after an invalid reply."""

    max_steps: int = 8
    max_retries: int = 2

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.max_retries < 0:
            raise ValueError(
                f"need max_steps >= 1 and max_retries >= 0, got {self.max_steps} and {self.max_retries}"
            )

    def of(self, runtime: Any) -> RunLimits:
        """The run's own limits when it passed a `RunLimits` context, else these defaults."""
        context = getattr(runtime, "context", None)
        return context if isinstance(context, RunLimits) else self


def out_of_supersteps(state: Mapping[str, Any], needed: int) -> bool:
    """Whether fewer than `needed` more supersteps fit under the run's recursion limit (LangGraph's
    managed `remaining_steps`, counting the current one); False where the state does not carry it."""
    remaining = state.get("remaining_steps")
    return isinstance(remaining, int) and remaining <= needed
