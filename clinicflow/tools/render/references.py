"""What a rendered line may say about the resources it points to (`References`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clinicflow.fhir.references import OUTSIDE_COMPARTMENTS, reference_of

__all__ = ["NOT_SHOWN", "NO_REFERENCES", "References"]

NOT_SHOWN = "a record outside this patient's (not shown)"
"""What a line says in place of a reference it may not show: another patient's, or not verified."""


@dataclass(frozen=True)
class References:
    """What lines may say about the resources they point to, resolved by the caller (FHIR reads).

    `names` holds display labels (a Practitioner's name, a Condition's display) keyed `Type/id`;
    `own` holds keys the caller verified to be in the patient's record, so they may be cited;
    `encounter_performers` maps an Encounter to the Practitioner who performed it, used when a request
    names no requester; `dates` holds the start day of referenced Encounters (a Condition's diagnosing
    visit); `server_base` is the FHIR base the resources came from (absolute references elsewhere are
    not this record's). A reference to a patient-owned type that is in neither `names` nor `own`
    (another patient, a RelatedPerson, a Condition not verified) is shown only as `NOT_SHOWN`.
    """

    names: Mapping[str, str] = field(default_factory=dict)
    own: frozenset[str] = frozenset()
    encounter_performers: Mapping[str, str] = field(default_factory=dict)
    dates: Mapping[str, str] = field(default_factory=dict)
    server_base: str | None = None

    def key(self, ref: Any) -> str | None:
        """`Type/id` of a Reference element (or string) on this server, else None."""
        parsed = reference_of(ref)
        return parsed.local_key(self.server_base) if parsed is not None else None

    def shown(self, ref: Mapping[str, Any]) -> bool:
        """Whether a line may name or cite what the Reference points to."""
        if not isinstance(ref.get("reference"), str):
            return True
        key = self.key(ref)
        if key is None:
            return False
        return key in self.names or key in self.own or key.partition("/")[0] in OUTSIDE_COMPARTMENTS

    def name(self, ref: Mapping[str, Any] | None) -> str | None:
        """The label of a Reference that may be shown: its own display, else the resolved name."""
        if not isinstance(ref, Mapping) or not self.shown(ref):
            return None
        if ref.get("display"):
            return str(ref["display"])
        key = self.key(ref)
        return self.names.get(key) if key else None


NO_REFERENCES = References()
