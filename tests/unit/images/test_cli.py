"""`clinicflow images index` on a folder: every image indexed, with a progress bar on the way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from clinicflow.cli.images import images_app
from clinicflow.tools.images import ImageIndex
from tests.unit.images.fakes import FakeEncoder


def test_indexing_a_folder_shows_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for n in range(3):
        Image.new("RGB", (8, 8), (40 * n, 10, 10)).save(folder / f"img{n}.png")
    opened = ImageIndex.open

    def with_fake_encoder(*args: Any, **kwargs: Any) -> Any:
        return opened(*args, **(kwargs | {"encoder": FakeEncoder()}))

    monkeypatch.setattr(ImageIndex, "open", with_fake_encoder)
    result = CliRunner().invoke(
        images_app,
        ["index", str(folder), "--encoder", str(tmp_path / "medsiglip"), "--index", str(tmp_path / "idx")],
    )
    assert result.exit_code == 0, result.output
    assert "Indexing images: 100%" in result.output
    assert "3/3" in result.output
    assert "3 images" in result.output
