"""The default model's conversion cache: reuse, replacing a partial folder, cleaning up after failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicflow.model import default_model
from clinicflow.model.default_model import MARKER_FILE, default_model_dir, ensure_default_model


def _fake_convert(calls: list[Path]) -> object:
    def convert(out_dir: Path, *, progress: bool) -> None:
        calls.append(out_dir)
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        (out_dir / MARKER_FILE).write_text("{}")

    return convert


def test_a_converted_folder_is_reused_without_converting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(default_model, "_convert", _fake_convert(calls))
    first = ensure_default_model(tmp_path, progress=False)
    second = ensure_default_model(tmp_path, progress=False)
    assert first == second == default_model_dir(tmp_path) == tmp_path / "models" / "gemma-3-270m"
    assert len(calls) == 1
    assert calls[0].parent == first.parent and calls[0] != first
    assert sorted(p.name for p in first.parent.iterdir()) == [".gemma-3-270m.lock", "gemma-3-270m"]


def test_a_partial_folder_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partial = default_model_dir(tmp_path)
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half")
    monkeypatch.setattr(default_model, "_convert", _fake_convert([]))
    ensure_default_model(tmp_path, progress=False)
    assert sorted(p.name for p in partial.iterdir()) == [MARKER_FILE, "config.json"]


def test_a_failed_conversion_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(out_dir: Path, *, progress: bool) -> None:
        out_dir.mkdir(parents=True)
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(default_model, "_convert", broken)
    with pytest.raises(OSError, match="disk full"):
        ensure_default_model(tmp_path, progress=False)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".gemma-3-270m.lock"]
