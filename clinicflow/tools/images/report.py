"""What an indexing run did: the images indexed, and those skipped with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["IndexReport", "SkippedImage"]


@dataclass(frozen=True)
class SkippedImage:
    """An image left out of the index, with the reason."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class IndexReport:
    """What one indexing run did: how many images went in, which were skipped and why."""

    indexed: int = 0
    skipped: list[SkippedImage] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        rate = f" ({self.indexed / self.seconds:.1f} images/s)" if self.seconds > 0 and self.indexed else ""
        lines = [f"indexed {self.indexed} images in {self.seconds:.1f} s{rate}, skipped {len(self.skipped)}"]
        lines += [f"  skipped {s}" for s in self.skipped]
        return "\n".join(lines)
