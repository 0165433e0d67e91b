"""A tiny random SigLIP checkpoint saved once per session, loaded through the real path."""

from __future__ import annotations

from pathlib import Path

import pytest

from .tiny_siglip import make_tiny_siglip


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a 2-layer SigLIP in the google/medsiglip-448 layout (32 px images)."""
    return make_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip") / "medsiglip-tiny")
