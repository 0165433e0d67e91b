"""Reuse of the KV cache of a prompt prefix that requests repeat (the system prompt and tool list of a
workflow), for single-row batches on the fast path."""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

__all__ = ["PrefixStore", "reusable_prefix"]


class PrefixStore:
    """KV caches of prompt prefixes that recent requests shared, most recently used last."""

    def __init__(self, *, min_tokens: int, capacity: int, recent: int = 16) -> None:
        self.min_tokens = min_tokens
        self.capacity = capacity
        self.hits = 0
        self._caches: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._recent: list[tuple[int, ...]] = []
        self._recent_size = recent

    def lookup(self, prompt: Sequence[int]) -> tuple[int, Any] | None:
        """The longest cached prefix of `prompt` (shorter than it) and its cache, or None."""
        best: tuple[int, ...] | None = None
        for prefix in self._caches:
            fits = len(prefix) < len(prompt) and tuple(prompt[: len(prefix)]) == prefix
            if fits and (best is None or len(prefix) > len(best)):
                best = prefix
        if best is None:
            return None
        self._caches.move_to_end(best)
        self.hits += 1
        return len(best), self._caches[best]

    def shared_prefix(self, prompt: Sequence[int]) -> int:
        """Length of the longest prefix `prompt` shares with a recent prompt (0 if below `min_tokens`)."""
        longest = 0
        for other in self._recent:
            n = 0
            for a, b in zip(prompt, other, strict=False):
                if a != b:
                    break
                n += 1
            longest = max(longest, n)
        longest = min(longest, len(prompt) - 1)
        return longest if longest >= self.min_tokens else 0

    def remember(self, prompt: Sequence[int]) -> None:
        """Keep a prompt as a candidate for sharing with later ones."""
        self._recent.append(tuple(prompt))
        del self._recent[: -self._recent_size]

    def add(self, prefix: Sequence[int], cache: Any) -> None:
        """Keep the KV cache of `prefix`."""
        self._caches[tuple(prefix)] = cache
        self._caches.move_to_end(tuple(prefix))
        while len(self._caches) > self.capacity:
            self._caches.popitem(last=False)


def reusable_prefix(model: Any, store: PrefixStore, prompt: list[int]) -> tuple[Any, int]:
    """A private copy of the KV cache of the longest reusable prefix of `prompt`, and its length."""
    import torch
    from transformers import DynamicCache

    hit = store.lookup(prompt)
    if hit is None:
        shared = store.shared_prefix(prompt)
        store.remember(prompt)
        if not shared:
            return None, 0
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            model(input_ids=torch.tensor([prompt[:shared]], device=model.device), cache=cache)
        store.add(prompt[:shared], cache)
        hit = (shared, cache)
    else:
        store.remember(prompt)
    length, cache = hit
    with contextlib.suppress(Exception):
        return copy.deepcopy(cache), length
    return None, 0
