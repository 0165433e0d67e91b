"""The folder of a resumable eval run: `run.json` (its configuration) and `results.jsonl` (one line per
finished item, appended and fsynced as each one ends).

A rerun into the same folder must match the stored configuration on the compared keys; it then skips the
items already in the results log. A line cut short by a kill is ignored when reading (that item runs
again) and ended before the next line is appended.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunConfigMismatchError", "RunFolder", "RunSummary", "write_atomic"]


class RunConfigMismatchError(ValueError):
    """The output folder holds a run with a different configuration."""


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (a kill leaves the old file or the new, never a part)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class RunSummary:
    """What a run did: items run now, skipped as already finished, failed; the report and its files."""

    out_dir: Path
    ran: int
    skipped: int
    failures: list[dict[str, str]]
    report: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)


class RunFolder:
    """`run.json` and `results.jsonl` of one run folder; `compared_keys` are what a rerun must match."""

    def __init__(self, out_dir: Path, compared_keys: Sequence[str]) -> None:
        self.out_dir = out_dir
        self.compared_keys = tuple(compared_keys)
        self.manifest_path = out_dir / "run.json"
        self.results_path = out_dir / "results.jsonl"

    def open(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create the folder, or check that the run already in it has the same configuration.

        Returns the manifest in force: the stored one, with any keys of `manifest` it lacks.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.manifest_path.exists():
            try:
                previous = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise RunConfigMismatchError(
                    f"{self.manifest_path} is unreadable ({exc}); use a new --out"
                ) from exc
            changed = [k for k in self.compared_keys if previous.get(k) != manifest.get(k)]
            if changed:
                detail = "; ".join(f"{k}: {previous.get(k)!r} -> {manifest.get(k)!r}" for k in changed)
                raise RunConfigMismatchError(
                    f"{self.out_dir} holds a run with a different configuration ({detail}); "
                    "rerun with the same settings to resume, or choose a new --out"
                )
            merged: dict[str, Any] = {**previous, **{k: v for k, v in manifest.items() if k not in previous}}
            return merged
        if self.results_path.exists() and self.results_path.stat().st_size:
            raise RunConfigMismatchError(f"{self.out_dir} holds results without run.json; choose a new --out")
        write_atomic(self.manifest_path, json.dumps(dict(manifest), indent=2, ensure_ascii=False) + "\n")
        return dict(manifest)

    def results(self) -> Iterator[dict[str, Any]]:
        """The results lines written so far; a line cut short by a kill is skipped."""
        if not self.results_path.exists():
            return
        for line in self.results_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record

    def append(self, result: Mapping[str, Any]) -> None:
        """Append and fsync one results line (after a line a kill cut short, on a line of its own)."""
        text = json.dumps(dict(result), ensure_ascii=False, default=str) + "\n"
        if self.results_path.exists() and self.results_path.stat().st_size:
            with self.results_path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    text = "\n" + text
        with self.results_path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
