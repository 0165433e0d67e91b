"""clinicflow's own decode loop for Gemma 3 text models, in place of transformers `generate`.

The prompt is prefilled eagerly by the model's own forward into a static KV cache of full-length
layers. Each decode step then runs: embedding, a Python loop over the decoder layers, final norm,
head, the logits processors, and the next-token choice. Every layer calls one shared layer function,
handed its own one-layer view of the cache; compiled (`torch.compile`, fullgraph, static shapes), it
is one graph for all layers, so compile time does not grow with depth (docs/gpu_fast_path.md, section
3). The attention masks (full and sliding window, padding masked) are built here from the cache index
of the token, so every step has the same shapes.

On CUDA, with `cuda_graph`, the whole step (embedding to logits) is captured once per (batch, cache
length) into a `torch.cuda.CUDAGraph` over static input buffers, and replayed for later steps and calls.

Per-step hooks work as in `generate`: logits processors get (token ids so far, float32 scores), rows
stop at their own limit (`RowLimits`) or at a stop id and then take `pad_id`, and a streamer gets the
prompt and then each step's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from transformers import Gemma3ForCausalLM
from transformers.cache_utils import Cache, StaticLayer

from clinicflow.model.batching import RowLimits

__all__ = ["DecodeLoop"]

_DONE_CHECK_EVERY = 8
"""Steps between host reads of "all rows finished" when no hook needs the tokens on the host anyway."""


class _LayerView(Cache):
    """One layer of a static cache, updated whatever layer index the attention passes, so every layer
    calls the shared layer function with inputs of the same kind."""

    def __init__(self, layer: StaticLayer) -> None:
        super().__init__(layers=[layer])
        self.layer = layer

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> Any:
        return self.layer.update(key_states, value_states)


def _run_layer(
    layer: Any,
    hidden: torch.Tensor,
    mask: torch.Tensor,
    embeddings: tuple[torch.Tensor, torch.Tensor],
    positions: torch.Tensor,
    cache: Cache,
) -> torch.Tensor:
    out: torch.Tensor = layer(
        hidden, attention_mask=mask, position_embeddings=embeddings, position_ids=positions, cache=cache
    )
    return out


class _StepInputs(NamedTuple):
    """What one decode step reads: each row's new token, its position, and the cache keys it may see."""

    token_ids: torch.Tensor
    positions: torch.Tensor
    visible: torch.Tensor


@dataclass
class _CapturedStep:
    """A decode step recorded as a CUDA graph, with the buffers it reads and writes."""

    graph: Any
    cache: Cache
    inputs: _StepInputs
    logits: torch.Tensor


@dataclass
class _Rows:
    """The token buffer and per-row state of one `generate` call."""

    tokens: torch.Tensor
    """`[batch, width + most]`: the prompt, then each step's tokens (`pad_id` past a row's end)."""
    visible: torch.Tensor
    """`[batch, cache length]`: keys a query may see before the causal and window limits (all but the
    left padding)."""
    positions: torch.Tensor
    unfinished: torch.Tensor


class DecodeLoop:
    """Greedy or sampled decoding of a `Gemma3ForCausalLM` through clinicflow's own step.

    One instance per model: it holds the layer function (compiled once, shared by every layer and
    recompiled once per new (batch, cache length) shape) and, on CUDA, the captured step graphs.
    """

    def __init__(self, model: Any, *, compile: bool = False, cuda_graph: bool = False) -> None:
        if not isinstance(model, Gemma3ForCausalLM):
            raise TypeError(f"the own decode loop runs Gemma3ForCausalLM only, not {type(model).__name__}")
        config: Any = model.config
        if config.use_bidirectional_attention:
            raise ValueError("the own decode loop needs causal attention, not use_bidirectional_attention")
        attention = config._attn_implementation
        if attention not in ("sdpa", "eager"):
            raise ValueError(f"the own decode loop builds sdpa or eager attention masks, not {attention!r}")
        self.model = model
        self.layer_types: list[str] = list(config.layer_types[: config.num_hidden_layers])
        self.sliding_window: int = config.sliding_window
        self.softcap: float | None = config.final_logit_softcapping
        self.additive_mask = attention == "eager"
        self.layer_fn: Any = _run_layer
        if compile:
            self.layer_fn = torch.compile(_run_layer, fullgraph=True, dynamic=False, mode="default")
        self.cuda_graph = cuda_graph
        self._captured: dict[tuple[int, int], _CapturedStep] = {}

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        cache: Cache,
        *,
        limits: Sequence[int],
        stop_ids: Sequence[int],
        pad_id: int,
        processors: Sequence[Any] = (),
        streamer: Any = None,
        temperature: float = 0.0,
    ) -> torch.Tensor:
        """The new tokens, `[batch, steps]`, of a left-padded batch; rows past their end hold `pad_id`.

        `cache` is an empty static cache of full-length `StaticLayer`s with room for the prompt and
        `max(limits) - 1` more tokens; the same cache object is reused between calls of one shape.
        """
        views = self._views(cache, input_ids.shape[1], max(limits))
        rows = self._rows(input_ids, attention_mask, views[0].layer.max_cache_len, max(limits), pad_id)
        if streamer is not None:
            streamer.put(input_ids.cpu())
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=rows.positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        steps = self._decode(
            rows, out.logits[:, -1], cache, views, limits, stop_ids, pad_id, processors, streamer, temperature
        )
        if streamer is not None:
            streamer.end()
        width = input_ids.shape[1]
        return rows.tokens[:, width : width + steps]

    @staticmethod
    def _views(cache: Cache, width: int, most: int) -> list[_LayerView]:
        """A one-layer view of each layer of `cache`, once it is checked to hold the prompt and reply."""
        layers = [layer for layer in cache.layers if isinstance(layer, StaticLayer) and not layer.is_sliding]
        if len(layers) != len(cache.layers):
            raise ValueError("the own decode loop needs a cache of full-length StaticLayers")
        length = layers[0].max_cache_len
        if width + most - 1 > length:
            raise ValueError(f"{width} prompt + {most} new tokens do not fit a cache of {length}")
        return [_LayerView(layer) for layer in layers]

    @staticmethod
    def _rows(
        input_ids: torch.Tensor, attention_mask: torch.Tensor, length: int, most: int, pad_id: int
    ) -> _Rows:
        """The buffers of a batch of prompts, before any step, for a cache of `length` keys."""
        batch, width = input_ids.shape
        device = input_ids.device
        tokens = torch.full((batch, width + most), pad_id, dtype=torch.long, device=device)
        tokens[:, :width] = input_ids
        visible = torch.ones((batch, length), dtype=torch.bool, device=device)
        visible[:, :width] = attention_mask.bool()
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        unfinished = torch.ones(batch, dtype=torch.bool, device=device)
        return _Rows(tokens, visible, positions, unfinished)

    def _decode(
        self,
        rows: _Rows,
        logits: torch.Tensor,
        cache: Cache,
        views: list[_LayerView],
        limits: Sequence[int],
        stop_ids: Sequence[int],
        pad_id: int,
        processors: Sequence[Any],
        streamer: Any,
        temperature: float,
    ) -> int:
        """Choose each step's tokens into `rows.tokens` from the prefill's `logits` on; the steps taken."""
        width, most = rows.positions.shape[1], max(limits)
        stops = torch.tensor(list(stop_ids), dtype=torch.long, device=rows.tokens.device)
        stopping = RowLimits(width, limits)
        host_hooks = bool(processors) or streamer is not None
        position = rows.positions[:, -1:]
        step = 0
        for step in range(most):
            scores = logits.to(dtype=torch.float32, copy=True)
            for processor in processors:
                scores = processor(rows.tokens[:, : width + step], scores)
            chosen = torch.where(rows.unfinished, self._choose(scores, temperature), pad_id)
            rows.tokens[:, width + step] = chosen
            if streamer is not None:
                streamer.put(chosen.cpu())
            done = stopping(rows.tokens[:, : width + step + 1], scores) | torch.isin(chosen, stops)
            rows.unfinished &= ~done
            if step + 1 == most:
                break
            if (host_hooks or (step + 1) % _DONE_CHECK_EVERY == 0) and not bool(rows.unfinished.any()):
                break
            position = position + 1
            logits = self._decode_step(_StepInputs(chosen[:, None], position, rows.visible), cache, views)
        return step + 1

    @staticmethod
    def _choose(scores: torch.Tensor, temperature: float) -> torch.Tensor:
        if temperature <= 0:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores / temperature, dim=-1)
        return torch.multinomial(probs, num_samples=1).squeeze(1)

    def _decode_step(self, inputs: _StepInputs, cache: Cache, views: list[_LayerView]) -> torch.Tensor:
        if self.cuda_graph and inputs.token_ids.device.type == "cuda":
            return self._replay(inputs, cache, views)
        return self._step(inputs, views)

    def _step(self, inputs: _StepInputs, views: list[_LayerView]) -> torch.Tensor:
        """Logits `[batch, vocab]` of one new token per row, written to the cache at its next index."""
        token_ids, positions, visible = inputs
        inner = self.model.model
        query = views[0].layer.cumulative_length  # cache index of this token (a device tensor)
        keys = torch.arange(visible.shape[1], device=visible.device)
        seen = visible & (keys <= query)
        masks = {
            "full_attention": self._mask(seen),
            "sliding_attention": self._mask(seen & (keys > query - self.sliding_window)),
        }
        hidden = inner.embed_tokens(token_ids)
        embeddings = {kind: inner.rotary_emb(hidden, positions, kind) for kind in set(self.layer_types)}
        for layer, kind, view in zip(inner.layers, self.layer_types, views, strict=True):
            hidden = self.layer_fn(layer, hidden, masks[kind], embeddings[kind], positions, view)
        logits: torch.Tensor = self.model.lm_head(inner.norm(hidden[:, -1]))
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def _mask(self, allowed: torch.Tensor) -> torch.Tensor:
        """`[batch, 1, 1, keys]`: bool for sdpa, additive (0 or the dtype's minimum) for eager attention."""
        mask = allowed[:, None, None, :]
        if not self.additive_mask:
            return mask
        dtype = self.model.dtype
        zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        return zeros.masked_fill(~mask, torch.finfo(dtype).min)

    # CUDA only: the whole step as one graph per (batch, cache length), replayed over static buffers.

    def _replay(self, inputs: _StepInputs, cache: Cache, views: list[_LayerView]) -> torch.Tensor:
        key = (inputs.visible.shape[0], inputs.visible.shape[1])
        captured = self._captured.get(key)
        if captured is not None and captured.cache is cache:
            for buffer, value in zip(captured.inputs, inputs, strict=True):
                buffer.copy_(value)
            captured.graph.replay()
            return captured.logits
        captured, logits = self._capture(inputs, cache, views)
        self._captured[key] = captured
        return logits

    def _capture(
        self, inputs: _StepInputs, cache: Cache, views: list[_LayerView]
    ) -> tuple[_CapturedStep, torch.Tensor]:
        """Run this step for real on a side stream (compiling the layer), then record it for replay.

        Recording does not run the step, so the cache is written once, by the real run.
        """
        buffers = _StepInputs(*(tensor.clone() for tensor in inputs))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            logits = self._step(buffers, views).clone()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_logits = self._step(buffers, views)
        return _CapturedStep(graph, cache, buffers, logits=static_logits), logits
