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
from typing import Any

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


@dataclass
class _CapturedStep:
    """A decode step recorded as a CUDA graph, with the buffers it reads and writes."""

    graph: Any
    cache: Cache
    token_ids: torch.Tensor
    positions: torch.Tensor
    visible: torch.Tensor
    logits: torch.Tensor


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
        batch, width = input_ids.shape
        most = max(limits)
        layers = [layer for layer in cache.layers if isinstance(layer, StaticLayer) and not layer.is_sliding]
        if len(layers) != len(cache.layers):
            raise ValueError("the own decode loop needs a cache of full-length StaticLayers")
        length = layers[0].max_cache_len
        if width + most - 1 > length:
            raise ValueError(f"{width} prompt + {most} new tokens do not fit a cache of {length}")
        device = input_ids.device
        tokens = torch.full((batch, width + most), pad_id, dtype=torch.long, device=device)
        tokens[:, :width] = input_ids
        # Keys a query may see, before the causal and window limits: all but the left padding.
        visible = torch.ones((batch, length), dtype=torch.bool, device=device)
        visible[:, :width] = attention_mask.bool()
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
        stopping = RowLimits(width, limits)
        unfinished = torch.ones(batch, dtype=torch.bool, device=device)
        host_hooks = bool(processors) or streamer is not None
        views = [_LayerView(layer) for layer in layers]
        if streamer is not None:
            streamer.put(input_ids.cpu())

        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits[:, -1]
        position = positions[:, -1:]
        step = 0
        for step in range(most):
            scores = logits.to(dtype=torch.float32, copy=True)
            for processor in processors:
                scores = processor(tokens[:, : width + step], scores)
            chosen = self._choose(scores, temperature)
            chosen = torch.where(unfinished, chosen, pad_id)
            tokens[:, width + step] = chosen
            if streamer is not None:
                streamer.put(chosen.cpu())
            done = stopping(tokens[:, : width + step + 1], scores) | torch.isin(chosen, stops)
            unfinished &= ~done
            if step + 1 == most:
                break
            if (host_hooks or (step + 1) % _DONE_CHECK_EVERY == 0) and not bool(unfinished.any()):
                break
            position = position + 1
            logits = self._decode_step(chosen[:, None], position, visible, cache, views)
        if streamer is not None:
            streamer.end()
        return tokens[:, width : width + step + 1]

    @staticmethod
    def _choose(scores: torch.Tensor, temperature: float) -> torch.Tensor:
        if temperature <= 0:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores / temperature, dim=-1)
        return torch.multinomial(probs, num_samples=1).squeeze(1)

    def _decode_step(
        self,
        token_ids: torch.Tensor,
        positions: torch.Tensor,
        visible: torch.Tensor,
        cache: Cache,
        views: list[_LayerView],
    ) -> torch.Tensor:
        if self.cuda_graph and token_ids.device.type == "cuda":
            return self._replay(token_ids, positions, visible, cache, views)
        return self._step(token_ids, positions, visible, views)

    def _step(
        self, token_ids: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor, views: list[_LayerView]
    ) -> torch.Tensor:
        """Logits `[batch, vocab]` of one new token per row, written to the cache at its next index."""
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

    def _replay(
        self,
        token_ids: torch.Tensor,
        positions: torch.Tensor,
        visible: torch.Tensor,
        cache: Cache,
        views: list[_LayerView],
    ) -> torch.Tensor:
        key = (visible.shape[0], visible.shape[1])
        captured = self._captured.get(key)
        if captured is not None and captured.cache is cache:
            captured.token_ids.copy_(token_ids)
            captured.positions.copy_(positions)
            captured.visible.copy_(visible)
            captured.graph.replay()
            return captured.logits
        captured, logits = self._capture(token_ids, positions, visible, cache, views)
        self._captured[key] = captured
        return logits

    def _capture(
        self,
        token_ids: torch.Tensor,
        positions: torch.Tensor,
        visible: torch.Tensor,
        cache: Cache,
        views: list[_LayerView],
    ) -> tuple[_CapturedStep, torch.Tensor]:
        """Run this step for real on a side stream (compiling the layer), then record it for replay.

        Recording does not run the step, so the cache is written once, by the real run.
        """
        buffers = (token_ids.clone(), positions.clone(), visible.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            logits = self._step(*buffers, views).clone()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_logits = self._step(*buffers, views)
        captured = _CapturedStep(graph, cache, *buffers, logits=static_logits)
        return captured, logits
