"""Batched generation with the real Gemma 3 270M (fp32, CPU): the same greedy tokens as one by one.

fp32 on purpose: in bf16 a row's logits move by up to ~0.5 with the batch around it (kernel shapes
change the rounding), so near-tied tokens may flip; fp32 noise (~3e-5) leaves these prompts stable.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import llguidance
import pytest

from clinicflow.model.batching import GenerationRequest
from clinicflow.model.engine import EngineOptions, generate_batch
from clinicflow.model.grammar import compile_json_grammar
from clinicflow.model.transformers_backend import LoadedModel, TransformersChatModel

QUESTIONS = [
    "What is HbA1c?",
    "List three symptoms of anemia.",
    "Hello",
    "The patient has a fever of 39 C and a cough. What should be checked first?",
]
LIMITS = [10, 6, 10, 8]
SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "string", "maxLength": 6}},
    "required": ["code"],
    "additionalProperties": False,
}


def _requests(loaded: LoadedModel) -> list[GenerationRequest]:
    prompts = [
        f"<bos><start_of_turn>user\nYou answer briefly.\n\n{q}<end_of_turn>\n<start_of_turn>model\n"
        for q in QUESTIONS
    ]
    ids = [loaded.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return [GenerationRequest(prompt_ids=i, max_new_tokens=n) for i, n in zip(ids, LIMITS, strict=True)]


@pytest.fixture(scope="module")
def loaded(gemma_dir: Path) -> LoadedModel:
    """A private fp32 copy of the 270M whose engine options the tests may change."""
    from clinicflow.model.transformers_backend import load_model_folder

    return load_model_folder(gemma_dir, device="cpu", dtype="float32", shared=False)


@pytest.fixture(scope="module")
def one_by_one(loaded: LoadedModel) -> list[list[int]]:
    return [generate_batch(loaded, [r])[0].tokens for r in _requests(loaded)]


@pytest.mark.slow
def test_a_batch_gives_each_row_the_tokens_it_gets_alone(
    loaded: LoadedModel, one_by_one: list[list[int]]
) -> None:
    outputs = generate_batch(loaded, _requests(loaded))
    assert [o.tokens for o in outputs] == one_by_one
    assert [len(t) for t in one_by_one] == LIMITS
    assert all(o.batch_size == len(QUESTIONS) for o in outputs)


@pytest.mark.slow
def test_static_cache_and_prefix_reuse_give_the_eager_tokens(
    loaded: LoadedModel, one_by_one: list[list[int]]
) -> None:
    eager = loaded.options
    try:
        loaded.options = EngineOptions(static_cache=True)
        loaded._engine_state = None  # type: ignore[attr-defined]
        assert [o.tokens for o in generate_batch(loaded, _requests(loaded))] == one_by_one
        loaded.options = EngineOptions(prefix_cache=True, min_prefix_tokens=8)
        loaded._engine_state = None  # type: ignore[attr-defined]
        outputs = [generate_batch(loaded, [r])[0] for r in _requests(loaded)]
    finally:
        loaded.options = eager
        loaded._engine_state = None  # type: ignore[attr-defined]
    assert [o.tokens for o in outputs] == one_by_one
    assert outputs[0].prefix_tokens_reused == 0 and all(o.prefix_tokens_reused >= 8 for o in outputs[1:])


@pytest.mark.slow
def test_a_constrained_row_and_free_rows_share_a_batch(
    loaded: LoadedModel, one_by_one: list[list[int]]
) -> None:
    free = _requests(loaded)[:2]
    matcher = llguidance.LLMatcher(loaded.ll_tokenizer(), compile_json_grammar(SCHEMA))
    forced = list(matcher.compute_ff_tokens())
    assert matcher.consume_tokens(forced)
    constrained = dataclasses.replace(
        free[0], prompt_ids=free[0].prompt_ids + forced, max_new_tokens=16, matcher=matcher
    )
    outputs = generate_batch(loaded, [*free, constrained])
    assert [o.tokens for o in outputs[:2]] == one_by_one[:2]
    text = loaded.tokenizer.decode(forced + outputs[2].tokens, skip_special_tokens=True)
    assert outputs[2].grammar_error is None
    assert set(json.loads(text)) == {"code"}


@pytest.mark.slow
async def test_concurrent_calls_through_the_chat_model_are_batched(gemma_dir: Path) -> None:
    """fp32 (see the module note), and a batch that waits for all four requests: what is compared depends
    neither on timing nor on which requests happened to share a batch."""
    import asyncio

    from langchain_core.messages import HumanMessage

    chat = TransformersChatModel(
        model_path=str(gemma_dir),
        device="cpu",
        dtype="float32",
        max_new_tokens=3,
        max_batch=len(QUESTIONS),
        batch_window_ms=600_000,  # never reached: the fourth request fills the batch
    )
    replies = await asyncio.gather(*(chat.ainvoke([HumanMessage(q)]) for q in QUESTIONS))
    assert all(r.usage_metadata and r.usage_metadata["output_tokens"] == 3 for r in replies)
    assert [r.response_metadata["batch_size"] for r in replies] == [len(QUESTIONS)] * len(QUESTIONS)
    loaded = chat.load()
    for question, reply in zip(QUESTIONS, replies, strict=True):
        prompt, _ = TransformersChatModel._prompt(loaded, [HumanMessage(question)])
        alone = loaded.run_batch([GenerationRequest(prompt_ids=loaded.encode(prompt)[0], max_new_tokens=3)])[
            0
        ]
        assert reply.content == loaded.tokenizer.decode(alone.tokens, skip_special_tokens=True).strip()
