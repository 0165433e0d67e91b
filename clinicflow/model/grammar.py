"""Grammar-constrained decoding of tool calls with llguidance, as a transformers logits processor.

llguidance (a small Rust wheel from the Guidance project) compiles a JSON schema into a grammar and
computes, per step, the set of tokens that keep the output inside it. xgrammar does the same but on
Linux pulls in triton (~1 GB); outlines-core is the other light option. The processor is a plain
callable (which `generate(logits_processor=[...])` accepts), so importing this module loads no torch.
"""

from __future__ import annotations

import json
from typing import Any

import llguidance
import numpy as np

__all__ = ["GrammarLogitsProcessor", "allowed_tokens", "compile_json_grammar", "make_ll_tokenizer"]

JSON_OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "lenient": True,
}
"""Compact JSON with the usual separators: a small model cannot pad a call with endless whitespace."""


def make_ll_tokenizer(hf_tokenizer: Any, *, n_vocab: int, stop_ids: list[int]) -> llguidance.LLTokenizer:
    """An llguidance tokenizer for a fast Hugging Face tokenizer (about a second or more; cache it)."""
    import llguidance.hf

    return llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=n_vocab, eos_token=stop_ids)


def compile_json_grammar(schema: dict[str, Any]) -> str:
    """The llguidance grammar of one JSON value matching `schema`."""
    return llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=JSON_OPTIONS)  # type: ignore[arg-type]


class GrammarLogitsProcessor:
    """Masks every token the grammar rejects; once the grammar is complete only a stop token remains.

    One processor per `generate()` call and batch size one. `prompt_length` is the length of the
    input ids passed to `generate`, already consumed by the matcher (including forced tokens). Should
    the matcher ever fail, only `stop_ids` stay allowed and `error` says why.
    """

    def __init__(self, matcher: llguidance.LLMatcher, prompt_length: int, stop_ids: list[int]) -> None:
        self.matcher = matcher
        self.prompt_length = prompt_length
        self.stop_ids = stop_ids
        self.error: str | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if input_ids.shape[0] != 1:
            raise ValueError("grammar-constrained decoding runs one sequence at a time")
        if input_ids.shape[1] > self.prompt_length and self.error is None:
            token = int(input_ids[0, -1])
            if not self.matcher.consume_token(token):
                self.error = self.matcher.get_error() or f"token {token} rejected"
        allowed = allowed_tokens(self.matcher, scores.shape[-1], self.stop_ids, failed=self.error is not None)
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))


def allowed_tokens(
    matcher: llguidance.LLMatcher, vocab: int, stop_ids: list[int], *, failed: bool = False
) -> Any:
    """A bool tensor over the vocabulary: the tokens the matcher allows next (only stop ids if it failed)."""
    import torch

    if failed:
        stop_only = torch.zeros(vocab, dtype=torch.bool)
        stop_only[stop_ids] = True
        return stop_only
    bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
    if bits.shape[0] < vocab:
        bits = np.concatenate([bits, np.zeros(vocab - bits.shape[0], dtype=np.uint8)])
    return torch.from_numpy(bits[:vocab].astype(bool))
