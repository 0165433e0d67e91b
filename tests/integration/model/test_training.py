"""`train_lora` on a tiny random Gemma 3 with the real tokenizer: loss on assistant turns only, falling."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from clinicflow.model.prompting import render_chat
from clinicflow.model.training import (
    TrainConfig,
    TrainingDataError,
    encode_example,
    read_examples,
    train_lora,
)

pytest.importorskip("peft")

EXAMPLE = {
    "messages": [
        {"role": "system", "content": "You answer with one tool call."},
        {"role": "user", "content": "Question: When was the last HbA1c?"},
        {"role": "assistant", "content": '{"name": "search_record", "arguments": {"code": "HbA1c"}}'},
        {
            "role": "user",
            "content": "Result of search_record (call_1):\n2025-03-02 HbA1c 7.1 % [Observation/a1]",
        },
        {"role": "assistant", "content": '{"name": "finish_retrieval", "arguments": {}}'},
    ],
    "metadata": {"role": "planner"},
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, gemma_dir: Path) -> Path:
    """A 2-layer random Gemma 3 with the real 262k-vocabulary tokenizer."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(gemma_dir)
    config = Gemma3TextConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        intermediate_size=64,
        vocab_size=len(tokenizer),
        sliding_window=16,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-gemma3")
    Gemma3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _write(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def test_only_assistant_tokens_and_their_end_of_turn_are_targets(tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    example = encode_example(tokenizer, EXAMPLE)
    target_text = tokenizer.decode([t for t, on in zip(example.input_ids, example.target, strict=True) if on])
    calls = [t["content"] for t in EXAMPLE["messages"] if t["role"] == "assistant"]
    assert target_text == "".join(f"{c}<end_of_turn>" for c in calls)
    # The whole rendering is tokenized once, as at inference: same ids as the plain render.
    full = render_chat(EXAMPLE["messages"], add_generation_prompt=False)
    assert example.input_ids == tokenizer(full, add_special_tokens=False)["input_ids"]


def test_loss_falls_and_a_rerun_resumes_from_the_checkpoint(tiny_dir: Path, tmp_path: Path) -> None:
    train = _write(tmp_path / "train.jsonl", [EXAMPLE] * 4)
    val = _write(tmp_path / "val.jsonl", [EXAMPLE])
    config = TrainConfig(
        base_model=str(tiny_dir),
        train_files=(str(train),),
        val_files=(str(val),),
        seed=3,
        epochs=6,
        learning_rate=5e-3,
        grad_accum=2,
        warmup_steps=1,
        checkpoint_every=4,
    )
    out = tmp_path / "run"
    result = train_lora(config, out, device="cpu", progress=False)
    assert result.optimizer_steps == 12
    assert result.val_loss_before is not None and result.val_loss_after is not None
    assert result.val_loss_after < result.val_loss_before
    assert (out / "adapter" / "adapter_config.json").is_file()
    # A rerun of a finished run resumes at its end: no step is taken again.
    again = train_lora(config, out, device="cpu", progress=False)
    assert again.optimizer_steps == 12 and again.losses == result.losses


def test_a_resumed_run_matches_an_uninterrupted_one(tiny_dir: Path, tmp_path: Path) -> None:
    train = _write(tmp_path / "train.jsonl", [EXAMPLE] * 4)
    base = dict(base_model=str(tiny_dir), train_files=(str(train),), seed=1, epochs=2, grad_accum=1)
    whole = train_lora(TrainConfig(**base, checkpoint_every=100), tmp_path / "whole", progress=False)
    stopped: list[int] = []

    def stop_after_three(step: int, loss: float) -> None:
        if step == 3:
            stopped.append(step)
            raise KeyboardInterrupt

    split = TrainConfig(**base, checkpoint_every=3)
    with pytest.raises(KeyboardInterrupt):
        train_lora(split, tmp_path / "split", progress=False, on_step=stop_after_three)
    resumed = train_lora(split, tmp_path / "split", progress=False)
    assert stopped == [3]
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-4)

    early = train_lora(replace(split, stop_after_steps=3), tmp_path / "early", progress=False)
    assert early.optimizer_steps == 3
    finished = train_lora(split, tmp_path / "early", progress=False)  # no stop: the same run to its end
    assert finished.losses == pytest.approx(whole.losses, rel=1e-4)
    with pytest.raises(TrainingDataError, match=r"other settings \(seed\)"):
        train_lora(replace(split, seed=2), tmp_path / "early", progress=False)


def test_bad_training_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(TrainingDataError, match=r"bad.jsonl:1: no assistant turn"):
        read_examples([bad])
    bad.write_text("not json\n")
    with pytest.raises(TrainingDataError, match=r"bad.jsonl:1: not JSON"):
        read_examples([bad])
    with pytest.raises(TrainingDataError, match="no such training file"):
        read_examples([tmp_path / "missing.jsonl"])


def test_validation_reads_at_most_max_val_examples_and_a_run_stops_after_its_steps(
    tiny_dir: Path, tmp_path: Path
) -> None:
    train = _write(tmp_path / "train.jsonl", [EXAMPLE])
    val = _write(tmp_path / "val.jsonl", [EXAMPLE] * 3)
    config = TrainConfig(
        base_model=str(tiny_dir),
        train_files=(str(train),),
        val_files=(str(val),),
        epochs=4,
        grad_accum=1,
        warmup_steps=0,
        max_val_examples=2,
        stop_after_steps=2,
    )
    result = train_lora(config, tmp_path / "run", device="cpu", progress=False)
    assert result.val_examples == 2
    assert result.optimizer_steps == 2


def test_a_run_can_start_from_a_saved_adapter(tiny_dir: Path, tmp_path: Path) -> None:
    train = _write(tmp_path / "train.jsonl", [EXAMPLE] * 4)
    val = _write(tmp_path / "val.jsonl", [EXAMPLE])
    base = dict(base_model=str(tiny_dir), train_files=(str(train),), val_files=(str(val),), grad_accum=2)
    first = train_lora(
        TrainConfig(**base, seed=1, epochs=4, learning_rate=5e-3), tmp_path / "a", progress=False
    )
    assert first.val_loss_after is not None
    started = TrainConfig(**base, seed=2, epochs=1, init_adapter=str(tmp_path / "a" / "adapter"))
    second = train_lora(started, tmp_path / "b", progress=False)
    # It starts where the first run ended, not from fresh (zero-effect) LoRA weights.
    assert second.val_loss_before == pytest.approx(first.val_loss_after, rel=1e-4)

    with pytest.raises(TrainingDataError, match="does not fit"):
        train_lora(replace(started, lora_r=4, lora_alpha=8), tmp_path / "c", progress=False)
    with pytest.raises(TrainingDataError, match=r"no adapter_model\.safetensors"):
        train_lora(replace(started, init_adapter=str(tmp_path)), tmp_path / "d", progress=False)
