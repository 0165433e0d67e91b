"""Setting up a grammar-constrained reply: the matcher over a JSON schema, the tokens the grammar forces
at the start, and a token budget the longest admitted value fits in (see `clinicflow.model.grammar`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from clinicflow.model.call_schema import max_json_bytes
from clinicflow.model.errors import ModelInputError

__all__ = ["Constraint", "constrain", "constrained_budget"]


@dataclass
class Constraint:
    """How one reply is decoded: under `matcher` (None: freely), after the `forced` tokens, in `budget`."""

    budget: int
    """Tokens the reply may take, the forced ones included."""
    matcher: Any = None
    forced: list[int] = field(default_factory=list)
    setup_s: float = 0.0
    """Seconds spent compiling the grammar and forcing its first tokens."""


def constrain(loaded: Any, schema: dict[str, Any] | None, requested: int, *, room: int) -> Constraint:
    """The constraint of a reply to `loaded` that must match `schema` (free when None), within `room`."""
    if schema is None:
        return Constraint(budget=requested)
    import llguidance

    from clinicflow.model.grammar import compile_json_grammar

    t0 = time.perf_counter()
    matcher = llguidance.LLMatcher(loaded.ll_tokenizer(), compile_json_grammar(schema))
    if matcher.is_error():
        raise ModelInputError(f"the JSON schema cannot be compiled to a grammar: {matcher.get_error()}")
    budget = constrained_budget(schema, requested, room=room)
    forced = list(matcher.compute_ff_tokens())[: max(budget - 1, 0)]
    if forced and not matcher.consume_tokens(forced):
        raise RuntimeError(f"grammar rejected its own forced tokens: {matcher.get_error()}")
    return Constraint(budget=budget, matcher=matcher, forced=forced, setup_s=time.perf_counter() - t0)


def constrained_budget(schema: dict[str, Any], requested: int, *, room: int) -> int:
    """Tokens a constrained reply may take: enough for the longest value the schema admits (a token is at
    least one byte), so the budget never cuts a call into invalid JSON, within the context's `room`."""
    bound = max_json_bytes(schema)
    if bound is None:
        return requested
    return max(requested, min(bound + 1, room))  # + 1: the stop token
