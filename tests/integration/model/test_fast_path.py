"""The fast path's static cache and compiled decode on a tiny random Gemma 3, compiled for real.

On the CPU always, and on CUDA too where there is a GPU (CUDA graphs). The prompts outrun the sliding
window, so the hybrid (sliding + global) attention is exercised. The compiled decode must give eager
greedy tokens and compile once per shape bucket, not once per token.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from clinicflow.model.batching import GenerationRequest
from clinicflow.model.engine import EngineOptions, generate_batch

VOCAB = 512
STOP = VOCAB - 1


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.fixture(scope="module", params=DEVICES)
def tiny(request: pytest.FixtureRequest) -> Any:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        intermediate_size=128,
        vocab_size=VOCAB,
        sliding_window=8,
        max_position_embeddings=1024,
    )
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).to(request.param).eval()


def _requests() -> list[GenerationRequest]:
    g = torch.Generator().manual_seed(1)
    lengths, limits = (19, 30, 5), (12, 16, 9)
    return [
        GenerationRequest(prompt_ids=torch.randint(2, STOP, (n,), generator=g).tolist(), max_new_tokens=k)
        for n, k in zip(lengths, limits, strict=True)
    ]


def _run(model: Any, options: EngineOptions) -> tuple[Any, list[list[int]]]:
    loaded = SimpleNamespace(model=model, tokenizer=None, pad_id=0, stop_ids=[STOP], options=options)
    return loaded, [o.tokens for o in generate_batch(loaded, _requests())]


def test_the_static_cache_gives_eager_tokens_and_is_reused(tiny: Any) -> None:
    _, eager = _run(tiny, EngineOptions())
    loaded, static = _run(tiny, EngineOptions(static_cache=True))
    assert static == eager
    again = [o.tokens for o in generate_batch(loaded, _requests())]
    assert again == eager
    assert len(loaded._engine_state.static) == 1


@pytest.mark.slow
def test_compiled_decode_gives_eager_tokens_and_compiles_once_per_shape(tiny: Any) -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    _, eager = _run(tiny, EngineOptions())
    loaded, compiled = _run(tiny, EngineOptions(static_cache=True, compile=True))
    assert compiled == eager
    graphs = counters["stats"]["unique_graphs"]
    assert 1 <= graphs <= 2, f"{graphs} graphs compiled for one shape"
    assert [o.tokens for o in generate_batch(loaded, _requests())] == eager
    assert counters["stats"]["unique_graphs"] == graphs, "the same shape compiled again"


@pytest.mark.slow
def test_more_compiled_shapes_than_the_default_recompile_limit(tiny: Any) -> None:
    """Each (batch, length) bucket compiles anew; the engine lifts the limit that would fail the next."""
    torch._dynamo.reset()
    saved = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = 2
    try:
        loaded = SimpleNamespace(
            model=tiny,
            tokenizer=None,
            pad_id=0,
            stop_ids=[STOP],
            options=EngineOptions(static_cache=True, compile=True),
        )
        for rows in (1, 2, 3):  # buckets of 1, 2 and 4 rows: three shapes
            requests = [GenerationRequest(prompt_ids=[5 + i, 6, 7], max_new_tokens=4) for i in range(rows)]
            assert all(len(o.tokens) == 4 for o in generate_batch(loaded, requests))
        assert len(loaded._engine_state.static) == 3
    finally:
        torch._dynamo.config.recompile_limit = saved
