"""How a loaded model runs a batch of requests: eager `generate`, or the fast path, and CPU quantization.

The eager path is a left-padded batched `generate` with a dynamic KV cache: the fallback and the
baseline. The fast path (on by default on CUDA only) adds a preallocated static KV cache reused across
calls (`static_cache`), compiled decode with CUDA graphs (`torch.compile` mode `reduce-overhead`; see
docs/gpu_fast_path.md), and reuse of the KV cache of a prompt prefix that requests repeat
(`prefix_cache`). `EngineOptions(decode="own")` runs the decode steps in clinicflow's own loop instead
of `generate` (`decode_loop`: one compiled decoder layer shared by all layers, optionally one CUDA
graph per step). Options, dtype and CPU quantization live in `engine_options`.

Rows with images add their `pixel_values` (concatenated in row order, as the model fills image soft
tokens row by row) and `token_type_ids` marking the soft tokens, over which Gemma 3 attends
bidirectionally. Their prompts never take part in prefix reuse: two different images give the same
soft-token ids.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clinicflow.model.batching import (
    BatchedGrammarProcessor,
    GenerationOutput,
    GenerationRequest,
    RowLimits,
    RowStreamer,
    left_pad,
)
from clinicflow.model.engine_options import EngineOptions, Quantization, default_dtype, quantize_for_cpu
from clinicflow.model.prefix_cache import PrefixStore, reusable_prefix
from clinicflow.model.static_cache import allow_compiled_shapes, bucket, cache_length, static_cache

__all__ = [
    "EngineOptions",
    "PrefixStore",
    "Quantization",
    "bucket",
    "default_dtype",
    "generate_batch",
    "quantize_for_cpu",
]


@dataclass
class _EngineState:
    """Per-model state of the fast path: static caches by shape, prefix caches, and the own decode loop."""

    static: dict[tuple[int, int], Any]
    prefixes: PrefixStore | None
    loop: Any = None
    """The `DecodeLoop` of `decode="own"`, made on first use."""


@dataclass
class _Batch:
    """The rows of one batch, padded to its size (the requests first), left-padded into ids and mask."""

    requests: list[GenerationRequest]
    size: int
    rows: list[list[int]]
    limits: list[int]
    ids: list[list[int]]
    mask: list[list[int]]

    @classmethod
    def of(cls, requests: list[GenerationRequest], size: int, pad_id: int) -> _Batch:
        """`requests` as `size` rows: the extra rows repeat the first prompt and stop after one token."""
        rows = [r.prompt_ids for r in requests]
        rows = rows + [rows[0]] * (size - len(rows))
        limits = [max(r.max_new_tokens, 1) for r in requests]
        limits = limits + [1] * (size - len(limits))
        ids, mask = left_pad(rows, pad_id)
        return cls(requests, size, rows, limits, ids, mask)

    @property
    def width(self) -> int:
        """Length of the padded prompts."""
        return len(self.ids[0])


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
    from transformers import StoppingCriteriaList

    opts: EngineOptions = loaded.options
    state = _state(loaded)
    if opts.decode == "own" and _own_loop_serves(requests):
        return _generate_own(loaded, state, requests)
    model, stop_ids = loaded.model, loaded.stop_ids
    first = requests[0]
    reused = 0
    past: Any = None
    if len(requests) == 1 and state.prefixes is not None and first.pixel_values is None:
        past, reused = reusable_prefix(model, state.prefixes, first.prompt_ids)
    bucketed = opts.static_cache and past is None
    batch = _Batch.of(requests, bucket(len(requests)) if bucketed else len(requests), loaded.pad_id)
    if bucketed:
        length = cache_length(batch.width, batch.limits, compiled=opts.compile)
        past = static_cache(loaded, state.static, batch.size, length)
    processors, streamer = _row_hooks(batch, stop_ids)
    config = _generation_config(loaded, first, max(batch.limits))
    input_ids = torch.tensor(batch.ids, device=model.device)
    extra = _extra_inputs(loaded, batch, input_ids)
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.tensor(batch.mask, device=model.device),
            generation_config=config,
            logits_processor=processors or None,
            stopping_criteria=StoppingCriteriaList([RowLimits(batch.width, batch.limits)]),
            streamer=streamer,
            **({"cache": past} if past is not None else {}),
            **extra,
        )
    took = time.perf_counter() - started
    return _outputs(loaded, batch, output[:, batch.width :], processors, took, reused)


def _generation_config(loaded: Any, first: GenerationRequest, max_new_tokens: int) -> Any:
    """The `generate` settings of a batch: its sampling (from its first request), stop ids and compiling."""
    from transformers import GenerationConfig

    opts: EngineOptions = loaded.options
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=first.temperature > 0,
        temperature=first.temperature if first.temperature > 0 else None,
        top_p=None,
        top_k=0 if first.temperature > 0 else None,  # plain temperature sampling (None means top-k 50)
        eos_token_id=loaded.stop_ids,
        pad_token_id=loaded.pad_id,
        disable_compile=not opts.compile,
    )
    if opts.compile:
        from transformers import CompileConfig

        allow_compiled_shapes()
        cuda = loaded.model.device.type == "cuda"
        config.compile_config = CompileConfig(
            fullgraph=True, dynamic=False, mode="reduce-overhead" if cuda else "default"
        )
        config.compile_config._compile_all_devices = True  # transformers compiles on CUDA only unless told
    return config


def _extra_inputs(loaded: Any, batch: _Batch, input_ids: Any) -> dict[str, Any]:
    """`generate` inputs beyond the ids: stop strings (from the first request) and the rows' images."""
    import torch

    first, model = batch.requests[0], loaded.model
    extra: dict[str, Any] = {}
    if first.stop_strings:
        extra = {"stop_strings": list(first.stop_strings), "tokenizer": loaded.tokenizer}
    padded = batch.requests + [first] * (batch.size - len(batch.requests))
    pixels = [r.pixel_values for r in padded if r.pixel_values is not None]
    if pixels:
        extra["pixel_values"] = torch.cat(pixels).to(device=model.device, dtype=model.dtype)
        extra["token_type_ids"] = (input_ids == loaded.image_token_id).long()
    return extra


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
        allow_compiled_shapes()
    batch = _Batch.of(requests, bucket(len(requests)), pad_id)
    length = cache_length(batch.width, batch.limits, compiled=opts.compile)
    cache = static_cache(loaded, state.static, batch.size, length)
    processors, streamer = _row_hooks(batch, stop_ids)
    device = model.device
    started = time.perf_counter()
    with torch.inference_mode():
        generated = state.loop.generate(
            torch.tensor(batch.ids, device=device),
            torch.tensor(batch.mask, device=device),
            cache,
            limits=batch.limits,
            stop_ids=stop_ids,
            pad_id=pad_id,
            processors=processors,
            streamer=streamer,
            temperature=requests[0].temperature,
        )
    took = time.perf_counter() - started
    return _outputs(loaded, batch, generated, processors, took)


def _row_hooks(
    batch: _Batch, stop_ids: Sequence[int]
) -> tuple[list[BatchedGrammarProcessor], RowStreamer | None]:
    """The grammar processor (if a row has a matcher) and token streamer (if a row has a callback) of the
    batch's rows, the requests first."""
    extra = [None] * (batch.size - len(batch.requests))
    matchers = [r.matcher for r in batch.requests] + extra
    processors = (
        [BatchedGrammarProcessor(matchers, batch.width, stop_ids, batch.limits)]
        if any(m is not None for m in matchers)
        else []
    )
    callbacks = [r.on_token for r in batch.requests] + extra
    streamer = (
        RowStreamer(callbacks, stop_ids, batch.limits) if any(c is not None for c in callbacks) else None
    )
    return processors, streamer


def _outputs(
    loaded: Any,
    batch: _Batch,
    generated: Any,
    processors: list[BatchedGrammarProcessor],
    took: float,
    reused: int = 0,
) -> list[GenerationOutput]:
    """Each request's output: its row of the new tokens `[rows, steps]`, cut at its limit or stop id."""
    errors = processors[0].errors if processors else [None] * batch.size
    return [
        GenerationOutput(
            tokens=_row_tokens(generated[row].tolist(), batch.limits[row], loaded.stop_ids, loaded.pad_id),
            batch_size=len(batch.requests),
            generation_s=took,
            grammar_error=errors[row],
            prefix_tokens_reused=reused,
        )
        for row in range(len(batch.requests))
    ]


def _row_tokens(generated: list[int], limit: int, stop_ids: Sequence[int], pad_id: int) -> list[int]:
    tokens = generated[:limit]
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[: i + 1]
    while tokens and tokens[-1] == pad_id:
        tokens.pop()
    return tokens
