"""Package data behind the questions: a small SNOMED CT is-a table and lists of common Synthea concepts.

`data/snomed_hierarchy.json` is hand-written for the condition codes Synthea emits most (injuries,
respiratory infections, diabetes, heart and kidney disease, dental, employment findings...). It is not the
SNOMED CT release: each child -> parent link follows SNOMED CT's is-a hierarchy, simplified where SNOMED
has intermediate concepts. Parents with a `label` are the groups transitive questions ask about; a
group's `keywords` mark condition names the table may be missing (see `Hierarchy.complete_for`).
`data/distractors.json` lists common conditions, medications and vaccines used as wrong options.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from clinicflow.evals.ehrqa.facts import Concept, norm_text

__all__ = ["Group", "Hierarchy", "distractor_concepts", "load_hierarchy"]


@dataclass(frozen=True)
class Group:
    """A parent concept questions ask about: code, display, the label used in questions, keywords."""

    code: str
    display: str
    label: str
    keywords: tuple[str, ...]


class Hierarchy:
    """Transitive is-a relations over the table's SNOMED CT codes."""

    def __init__(self, concepts: dict[str, dict[str, Any]]) -> None:
        self._concepts = concepts
        self._parents = {code: tuple(entry.get("parents") or ()) for code, entry in concepts.items()}

    def display(self, code: str) -> str | None:
        entry = self._concepts.get(code)
        return str(entry["display"]) if entry else None

    def ancestors(self, code: str) -> set[str]:
        """Every code above `code` (not itself)."""
        seen: set[str] = set()
        todo = list(self._parents.get(code, ()))
        while todo:
            parent = todo.pop()
            if parent not in seen:
                seen.add(parent)
                todo.extend(self._parents.get(parent, ()))
        return seen

    def descendants(self, code: str) -> set[str]:
        """Every code below `code` (not itself)."""
        return {child for child in self._parents if code in self.ancestors(child)}

    def related(self, a: str, b: str) -> bool:
        """Whether one code is the other, or above or below it."""
        return a == b or a in self.ancestors(b) or b in self.ancestors(a)

    def groups(self) -> list[Group]:
        """The labelled parents, in code order."""
        return [
            Group(code, str(entry["display"]), str(entry["label"]), tuple(entry.get("keywords") or ()))
            for code, entry in sorted(self._concepts.items())
            if entry.get("label")
        ]

    def complete_for(self, group: Group, names: Iterable[tuple[str, str]]) -> bool:
        """False when a condition (code, name) outside the group's known members matches its keywords."""
        members = self.descendants(group.code) | {group.code}
        for code, name in names:
            if code in members:
                continue
            text = norm_text(name)
            if any(norm_text(k) in text for k in group.keywords):
                return False
        return True


@cache
def _data(name: str) -> dict[str, Any]:
    text = resources.files("clinicflow.evals.ehrqa").joinpath("data", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_hierarchy() -> Hierarchy:
    """The packaged SNOMED CT is-a table."""
    return Hierarchy(_data("snomed_hierarchy.json")["concepts"])


def distractor_concepts(family: str) -> list[Concept]:
    """Packaged common concepts of a family: 'condition', 'medication' or 'vaccine'."""
    return [Concept(c["system"], c["code"], c["display"]) for c in _data("distractors.json")[family]]
