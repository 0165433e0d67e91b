"""How a loaded model runs a batch of requests: eager `generate`, or the fast path, and CPU quantization.

The eager path is a left-padded batched `generate` with a dynamic KV cache: the fallback and the
baseline. The fast path (on by default on CUDA only) adds a preallocated static KV cache reused across
calls (batch sizes rounded up to a power of two and cache lengths to a multiple of 256, or to a power
of two when compiled, so shapes repeat), compiled decode with CUDA graphs (`torch.compile` mode
`reduce-overhead`; see docs/gpu_fast_path.md), and reuse of the
KV cache of a prompt prefix that requests repeat (the system prompt and tool list of a workflow).
`EngineOptions(decode="own")` runs the decode steps in clinicflow's own loop instead of `generate`
(`decode_loop`: one compiled decoder layer shared by all layers, optionally one CUDA graph per step).

Rows with images add their `pixel_values` (concatenated in row order, as the model fills image soft
tokens row by row) and `token_type_ids` marking the soft tokens, over which Gemma 3 attends
bidirectionally. Their prompts never take part in prefix reuse: two different images give the same
soft-token ids.
"""

from __future__ import annotations

import contextlib
import copy
import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from clinicflow.model.batching import (
    BatchedGrammarProcessor,
    GenerationOutput,
    GenerationRequest,
    RowLimits,
    RowStreamer,
    left_pad,
)

__all__ = [
    "EngineOptions",
    "PrefixStore",
    "Quantization",
    "bucket",
    "default_dtype",
    "generate_batch",
    "quantize_for_cpu",
]

Quantization = Literal["none", "int8", "int8-head"]
_LENGTH_BUCKET = 256
_COMPILED_SHAPES = 64
"""Compiled (batch, cache length) shapes allowed: 7 batch buckets (1-64) x 9 lengths (256-64k)."""


@dataclass(frozen=True)
class EngineOptions:
    """How generation runs. Defaults are the eager path; `for_device` turns the fast path on for CUDA."""

    static_cache: bool = False
    """Preallocated static KV cache, reused across calls with the same (bucketed) shape."""
    compile: bool = False
    """Compile the decode step (CUDA graphs on CUDA); needs `static_cache`."""
    prefix_cache: bool = False
    """Reuse the KV cache of a prompt prefix shared with a recent request (single-row batches)."""
    min_prefix_tokens: int = 32
    """Shortest shared prefix worth caching."""
    max_prefixes: int = 8
    """Prefix caches kept (least recently used dropped first)."""
    decode: Literal["generate", "own"] = "generate"
    """Who runs the decode steps: transformers `generate`, or clinicflow's own loop (`decode_loop`, Gemma 3
    text models), which prefills into a static cache and, with `compile`, compiles one decoder layer
    shared by all layers instead of the whole model. Its sampling applies the temperature only (no
    top-k or top-p). Requests with stop strings or images stay on `generate`; prefix reuse is not used."""
    cuda_graph: bool = False
    """With `decode="own"` on CUDA: replay each decode step as one CUDA graph per (batch, length) shape."""

    def __post_init__(self) -> None:
        if self.decode not in ("generate", "own"):
            raise ValueError(f"decode must be 'generate' or 'own', not {self.decode!r}")
        if self.cuda_graph and self.decode != "own":
            raise ValueError("cuda_graph needs decode='own'")

    @classmethod
    def for_device(
        cls,
        device: str,
        fast_path: Literal["auto", "on", "off"] = "auto",
        decode: Literal["generate", "own"] = "generate",
    ) -> EngineOptions:
        """The fast path on CUDA (or when forced `on`), the eager path otherwise.

        With `decode="own"` the own loop runs on its static cache; on the fast path it compiles its
        layer and, on CUDA, replays each step as a CUDA graph.
        """
        on = fast_path == "on" or (fast_path == "auto" and device.startswith("cuda"))
        cuda = device.startswith("cuda")
        if decode == "own":
            return cls(static_cache=True, compile=on and cuda, decode="own", cuda_graph=on and cuda)
        if not on:
            return cls()
        return cls(static_cache=True, compile=cuda, prefix_cache=True)


def default_dtype(device: str) -> str:
    """bfloat16 on CUDA and on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX), else float32.

    On such a CPU, bf16 decodes the 270M about 2x faster than float32 (half the weight bytes per
    token) and prefills faster too; elsewhere bf16 matmuls are emulated, so float32 stays.
    """
    if device.startswith("cuda"):
        return "bfloat16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) else "float32"


def bucket(n: int, *, multiple: int | None = None) -> int:
    """`n` rounded up to a power of two, or to a multiple of `multiple` when given."""
    if multiple:
        return -(-n // multiple) * multiple
    size = 1
    while size < n:
        size *= 2
    return size


def quantize_for_cpu(model: Any, mode: Quantization) -> Any:
    """The model with int8 dynamic quantization of every Linear (`int8`) or only the output head."""
    if mode == "none":
        return model
    import torch

    if mode == "int8":
        spec: Any = {torch.nn.Linear}
    elif mode == "int8-head":
        spec = {"lm_head": torch.ao.quantization.default_dynamic_qconfig}
    else:
        raise ValueError(f"quantization must be 'none', 'int8' or 'int8-head', not {mode!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


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


@dataclass
class _EngineState:
    """Per-model state of the fast path: static caches by shape, prefix caches, and the own decode loop."""

    static: dict[tuple[int, int], Any]
    prefixes: PrefixStore | None
    loop: Any = None
    """The `DecodeLoop` of `decode="own"`, made on first use."""


def _state(loaded: Any) -> _EngineState:
    state = getattr(loaded, "_engine_state", None)
    if state is None:
        opts: EngineOptions = loaded.options
        prefixes = (
            PrefixStore(min_tokens=opts.min_prefix_tokens, capacity=opts.max_prefixes)
            if opts.prefix_cache
            else None
        )
        state = _EngineState(static={}, prefixes=prefixes)
        loaded._engine_state = state
    return state


def generate_batch(loaded: Any, requests: list[GenerationRequest]) -> list[GenerationOutput]:
    """Generate every request of one compatible group in one `generate` call, each row to its own limit."""
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    opts: EngineOptions = loaded.options
    state = _state(loaded)
    if opts.decode == "own" and _own_loop_serves(requests):
        return _generate_own(loaded, state, requests)
    model, pad_id, stop_ids = loaded.model, loaded.pad_id, loaded.stop_ids
    first = requests[0]
    rows = [r.prompt_ids for r in requests]
    limits = [max(r.max_new_tokens, 1) for r in requests]
    reused = 0
    past: Any = None
    if len(requests) == 1 and state.prefixes is not None and first.pixel_values is None:
        past, reused = _prefix_cache(model, state.prefixes, rows[0])
    size = len(rows)
    if opts.static_cache and past is None:
        size = bucket(len(rows))
        rows = rows + [rows[0]] * (size - len(rows))
        limits = limits + [1] * (size - len(limits))
    padded = requests + [first] * (size - len(requests))
    pixels = [r.pixel_values for r in padded if r.pixel_values is not None]
    ids, mask = left_pad(rows, pad_id)
    width = len(ids[0])
    if opts.static_cache and past is None:
        length = width + max(limits)
        # Compiled shapes are few (lengths by powers of two), as each one compiles anew.
        length = (
            bucket(max(length, _LENGTH_BUCKET)) if opts.compile else bucket(length, multiple=_LENGTH_BUCKET)
        )
        past = _static_cache(loaded, state, size, length)
    processors, streamer = _row_hooks(requests, size, width, stop_ids, limits)
    config = GenerationConfig(
        max_new_tokens=max(limits),
        do_sample=first.temperature > 0,
        temperature=first.temperature if first.temperature > 0 else None,
        top_p=None,
        top_k=0 if first.temperature > 0 else None,  # plain temperature sampling (None means top-k 50)
        eos_token_id=stop_ids,
        pad_token_id=pad_id,
        disable_compile=not opts.compile,
    )
    if opts.compile:
        from transformers import CompileConfig

        _allow_compiled_shapes()
        cuda = model.device.type == "cuda"
        config.compile_config = CompileConfig(
            fullgraph=True, dynamic=False, mode="reduce-overhead" if cuda else "default"
        )
        config.compile_config._compile_all_devices = True  # transformers compiles on CUDA only unless told
    extra: dict[str, Any] = {}
    if first.stop_strings:
        extra = {"stop_strings": list(first.stop_strings), "tokenizer": loaded.tokenizer}
    device = model.device
    input_ids = torch.tensor(ids, device=device)
    if pixels:
        extra["pixel_values"] = torch.cat(pixels).to(device=device, dtype=model.dtype)
        extra["token_type_ids"] = (input_ids == loaded.image_token_id).long()
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.tensor(mask, device=device),
            generation_config=config,
            logits_processor=processors or None,
            stopping_criteria=StoppingCriteriaList([RowLimits(width, limits)]),
            streamer=streamer,
            **({"cache": past} if past is not None else {}),
            **extra,
        )
    took = time.perf_counter() - started
    errors = processors[0].errors if processors else [None] * size
    outputs = []
    for row in range(len(requests)):
        tokens = _row_tokens(output[row, width:].tolist(), limits[row], stop_ids, pad_id)
        outputs.append(
            GenerationOutput(
                tokens=tokens,
                batch_size=len(requests),
                generation_s=took,
                grammar_error=errors[row],
                prefix_tokens_reused=reused,
            )
        )
    return outputs


def _own_loop_serves(requests: list[GenerationRequest]) -> bool:
    """Whether the own decode loop can run these requests (no stop strings, no images)."""
    return all(not r.stop_strings and r.pixel_values is None for r in requests)


def _generate_own(
    loaded: Any, state: _EngineState, requests: list[GenerationRequest]
) -> list[GenerationOutput]:
    """`generate_batch` through the own decode loop, on a bucketed static cache of full-length layers."""
    import torch

    from clinicflow.model.decode_loop import DecodeLoop

    opts: EngineOptions = loaded.options
    model, pad_id, stop_ids = loaded.model, loaded.pad_id, loaded.stop_ids
    if state.loop is None:
        state.loop = DecodeLoop(model, compile=opts.compile, cuda_graph=opts.cuda_graph)
    if opts.compile:
        _allow_compiled_shapes()
    size = bucket(len(requests))
    rows = [r.prompt_ids for r in requests]
    rows = rows + [rows[0]] * (size - len(rows))
    limits = [max(r.max_new_tokens, 1) for r in requests]
    limits = limits + [1] * (size - len(limits))
    ids, mask = left_pad(rows, pad_id)
    width = len(ids[0])
    length = width + max(limits)
    length = bucket(max(length, _LENGTH_BUCKET)) if opts.compile else bucket(length, multiple=_LENGTH_BUCKET)
    cache = _static_cache(loaded, state, size, length)
    processors, streamer = _row_hooks(requests, size, width, stop_ids, limits)
    device = model.device
    started = time.perf_counter()
    with torch.inference_mode():
        generated = state.loop.generate(
            torch.tensor(ids, device=device),
            torch.tensor(mask, device=device),
            cache,
            limits=limits,
            stop_ids=stop_ids,
            pad_id=pad_id,
            processors=processors,
            streamer=streamer,
            temperature=requests[0].temperature,
        )
    took = time.perf_counter() - started
    errors = processors[0].errors if processors else [None] * size
    return [
        GenerationOutput(
            tokens=_row_tokens(generated[row].tolist(), limits[row], stop_ids, pad_id),
            batch_size=len(requests),
            generation_s=took,
            grammar_error=errors[row],
        )
        for row in range(len(requests))
    ]


def _row_hooks(
    requests: list[GenerationRequest], size: int, width: int, stop_ids: Sequence[int], limits: list[int]
) -> tuple[list[BatchedGrammarProcessor], RowStreamer | None]:
    """The grammar processor (if a row has a matcher) and token streamer (if a row has a callback) of a
    batch of `size` rows, the requests first."""
    matchers = [r.matcher for r in requests] + [None] * (size - len(requests))
    processors = (
        [BatchedGrammarProcessor(matchers, width, stop_ids, limits)]
        if any(m is not None for m in matchers)
        else []
    )
    callbacks = [r.on_token for r in requests] + [None] * (size - len(requests))
    streamer = RowStreamer(callbacks, stop_ids, limits) if any(c is not None for c in callbacks) else None
    return processors, streamer


def _allow_compiled_shapes() -> None:
    """Lift dynamo's recompile limit to the number of shape buckets.

    Each (batch, length) bucket is one more compiled graph of the same function; the default limit (8)
    would fail the ninth shape under fullgraph.
    """
    import torch._dynamo

    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = max(limit, _COMPILED_SHAPES)


def _row_tokens(generated: list[int], limit: int, stop_ids: Sequence[int], pad_id: int) -> list[int]:
    tokens = generated[:limit]
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[: i + 1]
    while tokens and tokens[-1] == pad_id:
        tokens.pop()
    return tokens


def _static_cache(loaded: Any, state: _EngineState, batch: int, length: int) -> Any:
    import torch
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    key = (batch, length)
    cache = state.static.get(key)
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
        state.static[key] = cache
    else:
        with torch.inference_mode():  # its tensors were made under inference mode
            cache.reset()
    return cache


def _prefix_cache(model: Any, store: PrefixStore, prompt: list[int]) -> tuple[Any, int]:
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
