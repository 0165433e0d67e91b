"""`clinicflow images index / search` end to end on the tiny SigLIP checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from clinicflow.cli.images import images_app

runner = CliRunner()


def make_folder(root: Path) -> Path:
    folder = root / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(folder / f"x{i}.png")
    (folder / "bad.png").write_bytes(b"garbage")
    return folder


def test_index_then_search_by_text_image_and_labels(tmp_path: Path, tiny_siglip: Path) -> None:
    folder = make_folder(tmp_path)
    index = tmp_path / "index"
    result = runner.invoke(
        images_app, ["index", str(folder), "--encoder", str(tiny_siglip), "--index", str(index)]
    )
    assert result.exit_code == 0, result.output
    assert "indexed 4 images" in result.output and "bad.png" in result.output

    result = runner.invoke(images_app, ["search", "chest x-ray", "--k", "2", "--index", str(index)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("1. ") and "[image: " in lines[0]

    query = folder / "x2.png"
    args = ["search", "--image", str(query), "--labels", "normal,pneumothorax", "--index", str(index)]
    result = runner.invoke(images_app, args)
    assert result.exit_code == 0, result.output
    out = result.stdout.strip().splitlines()
    assert out[0].startswith("query image: ") and "pneumothorax" in out[0]
    assert out[1].endswith(f"[image: {query.resolve()}]") and "similarity 1.000" in out[1]
    assert "labels " in out[1]

    result = runner.invoke(images_app, ["search", "chest", "--patient", "p1", "--index", str(index)])
    assert result.exit_code == 0 and result.stdout.strip() == "no images indexed for patient p1"


def test_bad_input_gives_one_line_errors(tmp_path: Path, tiny_siglip: Path) -> None:
    folder = make_folder(tmp_path)
    missing = tmp_path / "nowhere" / "medsiglip-448"
    result = runner.invoke(
        images_app, ["index", str(folder), "--encoder", str(missing), "--index", str(tmp_path / "i")]
    )
    assert result.exit_code == 2 and str(missing) in result.output and "Traceback" not in result.output

    result = runner.invoke(images_app, ["search", "chest", "--index", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no image index" in result.output

    result = runner.invoke(images_app, ["search", "--index", str(tmp_path / "none")])
    assert result.exit_code == 2 and "either a text query or --image" in result.output
