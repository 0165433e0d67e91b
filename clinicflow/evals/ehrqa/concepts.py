"""Concepts and names as the answer key reads them: days, codings, displays, person names.

Dates are whole days (`YYYY-MM-DD`, the date part as written); partial or missing dates are None.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CVX",
    "LOINC",
    "RXNORM",
    "SNOMED",
    "Concept",
    "all_codes",
    "all_names",
    "coded",
    "codings",
    "concept_of",
    "core_name",
    "name_tokens",
    "norm_text",
    "parse_day",
    "person_name",
    "status_code",
]

SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
CVX = "http://hl7.org/fhir/sid/cvx"

_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_TAG = re.compile(
    r"\s*\((disorder|finding|situation|morphologic abnormality|procedure|observable entity|qualifier value|"
    r"event|body structure|regime/therapy|substance|person|environment|clinical drug|product)\)\s*$",
    re.IGNORECASE,
)
_TITLES = frozenset({"dr", "mr", "mrs", "ms", "miss", "md", "do", "phd", "rn", "np", "pa", "prof"})


def parse_day(value: Any) -> dt.date | None:
    """The calendar day of a FHIR date/dateTime with at least day precision, else None."""
    if not isinstance(value, str):
        return None
    match = _DAY.match(value)
    if not match:
        return None
    try:
        return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def norm_text(text: str) -> str:
    """Case-folded words joined by single spaces, punctuation dropped."""
    return " ".join(re.findall(r"[^\W_]+", text.casefold()))


def core_name(display: str) -> str:
    """A display without its SNOMED semantic tag: 'Viral sinusitis (disorder)' -> 'Viral sinusitis'."""
    return _TAG.sub("", display).strip()


def name_tokens(name: str) -> list[str]:
    """Letters-only lower-case tokens of a person's name without titles ('Dr. Ann12 Lee' -> ann, lee)."""
    words = [re.sub(r"[^a-z]", "", w) for w in re.split(r"[\s.,]+", name.casefold())]
    return [w for w in words if w and w not in _TITLES]


@dataclass(frozen=True)
class Concept:
    """One coded concept: the coding questions use, and its display (None when the source gives none)."""

    system: str
    code: str
    display: str | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.system, self.code)

    @property
    def name(self) -> str:
        """The display without its semantic tag ('' when there is no display)."""
        return core_name(self.display) if self.display else ""


def codings(concept: Any) -> list[Mapping[str, Any]]:
    """The codings of a CodeableConcept that carry a code."""
    if not isinstance(concept, Mapping):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, Mapping) and c.get("code")]


def concept_of(concept: Any, preferred: Sequence[str]) -> Concept | None:
    """The coding of the first preferred system present (else the first), with its display or text."""
    found = codings(concept)
    if not found:
        return None
    chosen = next((c for system in preferred for c in found if c.get("system") == system), found[0])
    display = chosen.get("display") or (concept.get("text") if isinstance(concept, Mapping) else None)
    display = str(display).strip() if display else None
    return Concept(str(chosen.get("system") or ""), str(chosen["code"]), display or None)


def all_codes(concept: Any) -> set[str]:
    """Every code of a CodeableConcept."""
    return {str(c["code"]) for c in codings(concept)}


def all_names(concept: Any) -> set[str]:
    """Every normalized name (displays and text, without semantic tags) of a CodeableConcept."""
    names = {norm_text(core_name(str(c["display"]))) for c in codings(concept) if c.get("display")}
    if isinstance(concept, Mapping) and concept.get("text"):
        names.add(norm_text(core_name(str(concept["text"]))))
    return {n for n in names if n}


def status_code(value: Any) -> str | None:
    """A status given as a code or as a CodeableConcept."""
    if isinstance(value, str):
        return value
    codes = codings(value)
    return str(codes[0]["code"]) if codes else None


def person_name(resource: Mapping[str, Any] | None) -> str | None:
    """'Dr. Given Family' of a Practitioner (official name first), or None."""
    if not isinstance(resource, Mapping):
        return None
    names = [n for n in resource.get("name") or [] if isinstance(n, Mapping)]
    if not names:
        return None
    chosen = next((n for n in names if n.get("use") == "official"), names[0])
    if chosen.get("text"):
        return str(chosen["text"])
    parts = [*(chosen.get("prefix") or []), *(chosen.get("given") or []), chosen.get("family") or ""]
    text = " ".join(str(p) for p in parts if p).strip()
    return text or None


def coded(concept: Any, preferred: Sequence[str]) -> tuple[Concept | None, frozenset[str], frozenset[str]]:
    """A fact's concept, codes and names, in that order."""
    return concept_of(concept, preferred), frozenset(all_codes(concept)), frozenset(all_names(concept))
