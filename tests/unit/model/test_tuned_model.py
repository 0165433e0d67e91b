"""The tuned default: merged once into the cache, reused after, and a missing adapter named."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicflow.model import tuned_model
from clinicflow.model.errors import ModelLoadError
from clinicflow.model.tuned_model import (
    BASE_MODEL_NAME,
    TUNED_MARKER_FILE,
    TUNED_MODEL_NAME,
    adapter_dir,
    ensure_tuned_model,
    resolve_model_name,
)


def test_the_adapter_ships_with_its_model_card() -> None:
    folder = adapter_dir()
    assert (folder / "adapter_config.json").is_file()
    assert (folder / "adapter_model.safetensors").stat().st_size < 40_000_000
    card = (folder / "MODEL_CARD.md").read_text()
    for needed in ("clinicflow model train", "seed 1001", "Not for clinical use"):
        assert needed in card


def test_the_merge_runs_once_and_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    merges: list[Path] = []

    def fake_merge(base: Path, adapter: Path, out_dir: Path) -> None:
        merges.append(out_dir)
        out_dir.mkdir(parents=True)
        (out_dir / TUNED_MARKER_FILE).write_text("{}")

    monkeypatch.setattr(tuned_model, "ensure_default_model", lambda cache, progress: tmp_path / "base")
    monkeypatch.setattr(tuned_model, "_merge", fake_merge)
    first = ensure_tuned_model(tmp_path, progress=False)
    assert first == tmp_path / "models" / TUNED_MODEL_NAME
    assert ensure_tuned_model(tmp_path, progress=False) == first
    assert len(merges) == 1 and merges[0] != first
    assert resolve_model_name(TUNED_MODEL_NAME, tmp_path, progress=False) == first
    assert resolve_model_name(BASE_MODEL_NAME, tmp_path, progress=False) == tmp_path / "base"
    assert resolve_model_name("/models/medgemma-27b", tmp_path, progress=False) is None


def test_a_missing_adapter_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="packaged adapter no-such-adapter is missing"):
        ensure_tuned_model(tmp_path, progress=False, name="no-such-adapter")
