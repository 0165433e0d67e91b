"""`clinicflow guidelines` commands on paths that need no encoder: empty index, bad folders, skipped files."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicflow.cli.guidelines import default_index_path, guidelines_app
from clinicflow.settings import Settings
from clinicflow.tools.guidelines import NO_GUIDELINES
from clinicflow.tools.guidelines import index as guideline_index
from tests.unit.guidelines.helpers import HashEmbedder

runner = CliRunner()


def test_default_index_lives_in_the_cache_dir(tmp_path: Path) -> None:
    assert default_index_path(Settings(cache_dir=tmp_path)) == tmp_path / "guidelines.sqlite"


def test_search_on_empty_index_says_so(tmp_path: Path) -> None:
    result = runner.invoke(guidelines_app, ["search", "sepsis fluids", "--index", str(tmp_path / "g.sqlite")])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == NO_GUIDELINES


def test_index_of_missing_folder_is_a_clean_error(tmp_path: Path) -> None:
    args = ["index", str(tmp_path / "nope"), "--index", str(tmp_path / "g.sqlite")]
    result = runner.invoke(guidelines_app, args)
    assert result.exit_code == 1
    assert "no such file or folder" in result.output
    assert "Traceback" not in result.output


def test_index_lists_skipped_files_with_reasons(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    result = runner.invoke(guidelines_app, ["index", str(folder), "--index", str(tmp_path / "g.sqlite")])
    assert result.exit_code == 0
    assert "skipped broken.pdf: unreadable PDF" in result.stdout


def test_search_with_bad_k_and_broken_index(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"garbage" * 100)
    result = runner.invoke(guidelines_app, ["search", "x", "--index", str(junk)])
    assert result.exit_code == 1
    assert "junk.sqlite" in result.output
    result = runner.invoke(guidelines_app, ["search", "x", "--k", "0", "--index", str(tmp_path / "g.sqlite")])
    assert result.exit_code == 1
    assert "k must be between" in result.output


def test_the_first_search_on_a_fresh_machine_indexes_the_starter_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFLOW_CACHE_DIR", str(tmp_path))
    embedder = HashEmbedder()
    monkeypatch.setattr(guideline_index, "default_embedder", lambda: embedder)
    result = runner.invoke(guidelines_app, ["search", "hemoglobin A1c target in diabetes", "--k", "2"])
    assert result.exit_code == 0, result.output
    assert "Indexing the starter guideline corpus" in result.output
    assert "Encoding guidelines: 100%" in result.output
    assert NO_GUIDELINES not in result.stdout
    assert "[guideline:" in result.stdout
    again = runner.invoke(guidelines_app, ["search", "sepsis fluids", "--k", "1"])
    assert "Indexing" not in again.output  # once only
