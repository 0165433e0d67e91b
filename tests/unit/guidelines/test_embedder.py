"""The MiniLM encoder wrapper: lazy loading and a clear error for a wrong model path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clinicflow.tools.guidelines import Embedder, GuidelineError, MiniLMEmbedder


def test_wrong_model_path_is_named(tmp_path: Path) -> None:
    encoder = MiniLMEmbedder(tmp_path / "no-model-here")
    assert isinstance(encoder, Embedder)
    with pytest.raises(GuidelineError, match="no-model-here"):
        encoder.encode(["x"])


def test_empty_input_needs_no_model(tmp_path: Path) -> None:
    out = MiniLMEmbedder(tmp_path / "never-loaded").encode([])
    assert out.shape == (0, 384)
    assert out.dtype == np.float32
