"""Static KV caches, preallocated per (batch, cache length) shape and reused across calls.

Batch sizes round up to a power of two and cache lengths to a multiple of 256, or to a power of two
when compiled, so shapes repeat: each compiled shape is one more graph of the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["allow_compiled_shapes", "bucket", "cache_length", "static_cache"]

_LENGTH_BUCKET = 256
_COMPILED_SHAPES = 64
"""Compiled (batch, cache length) shapes allowed: 7 batch buckets (1-64) x 9 lengths (256-64k)."""


def bucket(n: int, *, multiple: int | None = None) -> int:
    """`n` rounded up to a power of two, or to a multiple of `multiple` when given."""
    if multiple:
        return -(-n // multiple) * multiple
    size = 1
    while size < n:
        size *= 2
    return size


def cache_length(width: int, limits: Sequence[int], *, compiled: bool) -> int:
    """The cache length for prompts of `width` and these reply limits, bucketed.

    Compiled shapes are few (lengths by powers of two), as each one compiles anew.
    """
    length = width + max(limits)
    return bucket(max(length, _LENGTH_BUCKET)) if compiled else bucket(length, multiple=_LENGTH_BUCKET)


def allow_compiled_shapes() -> None:
    """Lift dynamo's recompile limit to the number of shape buckets.

    Each (batch, length) bucket is one more compiled graph of the same function; the default limit (8)
    would fail the ninth shape under fullgraph.
    """
    import torch._dynamo

    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = max(limit, _COMPILED_SHAPES)


def static_cache(loaded: Any, caches: dict[tuple[int, int], Any], batch: int, length: int) -> Any:
    """The static cache of this shape from `caches`, emptied; made (and kept there) on first use."""
    import torch
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    key = (batch, length)
    cache = caches.get(key)
    if cache is None:
        cache = StaticCache(config=loaded.model.config, max_cache_len=length)
        if loaded.options.compile or loaded.options.decode == "own":
            # A sliding-window layer counts its length in a Python int, which compiled decode guards
            # on: one recompile per token, until the recompile limit fails the compile. A full-length
            # layer holds the same keys (the window is applied by the attention mask) with a tensor
            # count; it costs memory only past the window (1024 tokens for Gemma 3). The own decode
            # loop masks the window itself and always takes full-length layers.
            cache.layers = [
                StaticLayer(max_cache_len=length) if getattr(layer, "is_sliding", False) else layer
                for layer in cache.layers
            ]
        caches[key] = cache
    else:
        with torch.inference_mode():  # its tensors were made under inference mode
            cache.reset()
    return cache
