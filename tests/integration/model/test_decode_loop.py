"""The own decode loop (`EngineOptions(decode="own")`) against eager `generate`, on tiny random Gemma 3s.

The prompts are left-padded and outrun the sliding window, the models have sliding and full-attention
layers, and the weights are drawn wider than the default init, so that the window, the padding mask
and the positions each change the greedy tokens. Compiled runs compile for real on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from clinicflow.model.batching import GenerationRequest
from clinicflow.model.decode_loop import DecodeLoop
from clinicflow.model.engine import EngineOptions, generate_batch

VOCAB = 512
STOP = VOCAB - 1
WINDOW = 8
LIMITS = (12, 16, 9)


def _tiny(layer_types: list[str]) -> Any:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        hidden_size=64,
        num_hidden_layers=len(layer_types),
        layer_types=layer_types,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        intermediate_size=128,
        vocab_size=VOCAB,
        sliding_window=WINDOW,
        max_position_embeddings=1024,
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():
        for weight in model.parameters():
            if weight.ndim == 2:
                weight.normal_(0.0, 0.1)
    return model


@pytest.fixture(scope="module")
def tiny() -> Any:
    """Six layers: five sliding-window layers and one full-attention layer (the Gemma 3 pattern)."""
    return _tiny(["sliding_attention"] * 5 + ["full_attention"])


def _requests() -> list[GenerationRequest]:
    g = torch.Generator().manual_seed(1)
    return [
        GenerationRequest(prompt_ids=torch.randint(2, STOP, (n,), generator=g).tolist(), max_new_tokens=k)
        for n, k in zip((19, 30, 5), LIMITS, strict=True)
    ]


def _loaded(model: Any, options: EngineOptions, stop_ids: list[int] | None = None) -> Any:
    return SimpleNamespace(
        model=model, tokenizer=None, pad_id=0, stop_ids=stop_ids or [STOP], options=options
    )


def _tokens(loaded: Any, requests: list[GenerationRequest]) -> list[list[int]]:
    return [o.tokens for o in generate_batch(loaded, requests)]


@pytest.fixture(scope="module")
def eager(tiny: Any) -> list[list[int]]:
    return _tokens(_loaded(tiny, EngineOptions()), _requests())


def test_the_own_loop_gives_eager_tokens_each_row_to_its_limit(tiny: Any, eager: list[list[int]]) -> None:
    loaded = _loaded(tiny, EngineOptions(decode="own"))
    assert _tokens(loaded, _requests()) == eager
    assert [len(t) for t in eager] == list(LIMITS)
    assert _tokens(loaded, _requests()) == eager, "a second call on the reused cache"
    assert len(loaded._engine_state.static) == 1


def test_a_stop_id_ends_its_row_as_in_generate(tiny: Any, eager: list[list[int]]) -> None:
    stop = eager[0][4]
    expected = _tokens(_loaded(tiny, EngineOptions(), [stop]), _requests())
    got = _tokens(_loaded(tiny, EngineOptions(decode="own"), [stop]), _requests())
    assert got == expected
    assert got[0][-1] == stop and len(got[0]) < LIMITS[0]


def test_token_callbacks_get_each_rows_tokens(tiny: Any, eager: list[list[int]]) -> None:
    seen: list[list[int]] = [[], [], []]
    requests = [dataclasses.replace(r, on_token=seen[i].append) for i, r in enumerate(_requests())]
    assert _tokens(_loaded(tiny, EngineOptions(decode="own")), requests) == eager
    assert seen == eager


class _BanLastToken:
    """A logits processor that forbids each row the token it just produced (reads the ids so far)."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.scatter(1, input_ids[:, -1:], float("-inf"))


def test_a_logits_processor_sees_the_ids_so_far_as_in_generate(tiny: Any) -> None:
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    ids = torch.tensor([[0] * 11 + list(range(20, 29)), list(range(40, 60))])
    mask = (ids != 0).long()
    with torch.inference_mode():
        expected = tiny.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=10,
            do_sample=False,
            top_p=None,
            top_k=None,
            pad_token_id=0,
            logits_processor=[_BanLastToken()],
            disable_compile=True,
        )[:, ids.shape[1] :]
        cache = StaticCache(config=tiny.config, max_cache_len=64)
        cache.layers = [StaticLayer(max_cache_len=64) for _ in cache.layers]
        got = DecodeLoop(tiny).generate(
            ids, mask, cache, limits=[10, 10], stop_ids=[STOP], pad_id=0, processors=[_BanLastToken()]
        )
    assert torch.equal(got, expected)
    assert all(int(row[i]) != int(row[i + 1]) for row in got for i in range(9))


def test_sampling_follows_the_temperature(tiny: Any, eager: list[list[int]]) -> None:
    """Near zero it picks the greedy tokens; at 1 it departs from them, the same way for the same seed.

    (Only the temperature applies: no top-k or top-p.)"""
    loaded = _loaded(tiny, EngineOptions(decode="own"))

    def sampled(temperature: float, seed: int) -> list[list[int]]:
        torch.manual_seed(seed)
        return _tokens(loaded, [dataclasses.replace(r, temperature=temperature) for r in _requests()])

    assert sampled(1e-4, 0) == eager
    warm = sampled(1.0, 7)
    assert warm != eager
    assert sampled(1.0, 7) == warm


def test_other_models_are_refused() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64
    )
    with pytest.raises(TypeError, match="Gemma3ForCausalLM"):
        DecodeLoop(LlamaForCausalLM(config))


@pytest.mark.slow
def test_the_compiled_layer_is_one_graph_whatever_the_depth(tiny: Any, eager: list[list[int]]) -> None:
    """A 2-layer and a 6-layer model compile the same number of graphs and give eager tokens."""
    from torch._dynamo.utils import counters

    shallow = _tiny(["sliding_attention", "full_attention"])
    cases = [(shallow, _tokens(_loaded(shallow, EngineOptions()), _requests())), (tiny, eager)]
    graphs, seconds = [], []
    for model, expected in cases:
        torch._dynamo.reset()
        counters.clear()
        loaded = _loaded(model, EngineOptions(decode="own", compile=True))
        started = time.perf_counter()
        assert _tokens(loaded, _requests()) == expected
        seconds.append(time.perf_counter() - started)
        graphs.append(counters["stats"]["unique_graphs"])
        assert _tokens(loaded, _requests()) == expected
        assert counters["stats"]["unique_graphs"] == graphs[-1], "the same shape compiled again"
    print(f"\nfirst call (compile included): 2 layers {seconds[0]:.1f} s, 6 layers {seconds[1]:.1f} s")
    assert graphs == [1, 1]


SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "string", "maxLength": 6}},
    "required": ["code"],
    "additionalProperties": False,
}
BYTE_EOS = 256


def _byte_tokenizer() -> Any:
    """A byte-level tokenizer (256 byte tokens, then `<eos>`), within the tiny models' vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<eos>"] = BYTE_EOS
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")


def test_a_grammar_row_shares_the_batch_with_free_rows(tiny: Any) -> None:
    """An llguidance-constrained row beside free rows gives `generate`'s tokens, and valid JSON."""
    import llguidance

    from clinicflow.model.grammar import compile_json_grammar, make_ll_tokenizer

    tokenizer = _byte_tokenizer()
    ll_tokenizer = make_ll_tokenizer(tokenizer, n_vocab=VOCAB, stop_ids=[BYTE_EOS])

    def requests() -> list[GenerationRequest]:
        matcher = llguidance.LLMatcher(ll_tokenizer, compile_json_grammar(SCHEMA))
        forced = list(matcher.compute_ff_tokens())
        assert matcher.consume_tokens(forced)
        free = _requests()[:2]
        constrained = GenerationRequest(
            prompt_ids=free[1].prompt_ids + forced, max_new_tokens=16, matcher=matcher
        )
        return [*free, constrained]

    expected = generate_batch(_loaded(tiny, EngineOptions(), [BYTE_EOS]), requests())
    got = generate_batch(_loaded(tiny, EngineOptions(decode="own"), [BYTE_EOS]), requests())
    assert [o.tokens for o in got] == [o.tokens for o in expected]
    assert got[2].grammar_error is None and got[2].tokens[-1] == BYTE_EOS
    forced = requests()[2].prompt_ids[len(_requests()[1].prompt_ids) :]
    assert set(json.loads(tokenizer.decode(forced + got[2].tokens[:-1]))) == {"code"}


def test_the_own_loop_is_chosen_by_settings_and_mapped_per_device() -> None:
    assert EngineOptions.for_device("cpu", "auto", "own") == EngineOptions(static_cache=True, decode="own")
    cuda = EngineOptions.for_device("cuda", "auto", "own")
    assert (cuda.compile, cuda.cuda_graph, cuda.prefix_cache) == (True, True, False)
    assert EngineOptions.for_device("cuda", "off", "own").compile is False


@pytest.mark.slow
def test_the_real_270m_replies_the_same_through_the_own_loop(gemma_dir: Any) -> None:
    from langchain_core.messages import HumanMessage

    from clinicflow.model import TransformersChatModel
    from tests.integration.model.test_generation import search_record

    def chat(decode: str) -> TransformersChatModel:
        # float32: in bf16 the two loops' different kernels may flip near-tied tokens.
        return TransformersChatModel(
            model_path=str(gemma_dir),
            device="cpu",
            dtype="float32",
            max_new_tokens=48,
            max_string_length=8,
            decode=decode,
        )

    base, own = chat("generate"), chat("own")
    question = [HumanMessage("What is HbA1c?")]
    assert own.invoke(question).content == base.invoke(question).content

    def call(model: TransformersChatModel) -> list[tuple[str, dict[str, Any]]]:
        reply = model.bind_tools([search_record], tool_choice="search_record").invoke(question)
        return [(c["name"], c["args"]) for c in reply.tool_calls]

    forced = call(own)
    assert forced == call(base)
    assert forced and forced[0][0] == "search_record"
