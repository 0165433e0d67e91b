"""A progress bar on stderr for long CLI jobs, driven by `progress(done, total)` callbacks."""

from __future__ import annotations

from types import TracebackType
from typing import Any

__all__ = ["ProgressBar"]


class ProgressBar:
    """`with ProgressBar("Indexing", "image") as bar: job(progress=bar)`: a tqdm bar on stderr that
    learns its total from the first callback, and is closed (left on screen) when the block ends."""

    def __init__(self, desc: str, unit: str) -> None:
        self.desc = desc
        self.unit = unit
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit)
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()
