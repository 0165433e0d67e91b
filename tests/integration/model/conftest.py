"""The real Gemma 3 270M on CPU, converted once into the cache dir and loaded once per test session."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clinicflow.model import TransformersChatModel, ensure_default_model
from clinicflow.settings import Settings


@pytest.fixture(scope="session")
def gemma_dir() -> Path:
    """The converted default model folder (converted on first use: about a minute or two)."""
    return ensure_default_model(Settings().cache_dir, progress=False)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def gemma(gemma_dir: Path) -> TransformersChatModel:
    """Gemma 3 270M on CPU, greedy, with short strings and replies so each call stays quick."""
    chat = TransformersChatModel(
        model_path=str(gemma_dir), device="cpu", max_new_tokens=48, max_string_length=8
    )
    started = time.perf_counter()
    chat.load()
    print(f"\nGemma 3 270M loaded from {gemma_dir} in {time.perf_counter() - started:.1f} s")
    return chat
