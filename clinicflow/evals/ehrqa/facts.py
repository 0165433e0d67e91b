"""Typed facts read from one patient record: conditions, prescriptions, immunizations, measurements.

This is the answer key's only view of the data, written independently of the agent and its tools.
Anything doubtful makes its code "tainted" (no question asks about it and no distractor uses it): a
resource entered in error, a refuted or unconfirmed condition, a prescription on hold, a dose not given.
Dates are whole days (`YYYY-MM-DD`, the date part as written); partial or missing dates leave a fact
undated, and questions that need the dates of a set skip any set with an undated member.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clinicflow.evals.ehrqa import concepts
from clinicflow.evals.ehrqa.concepts import (
    CVX,
    LOINC,
    RXNORM,
    SNOMED,
    Concept,
    all_codes,
    all_names,
    coded,
    codings,
    concept_of,
    core_name,
    norm_text,
    parse_day,
    person_name,
    status_code,
)
from clinicflow.evals.ehrqa.concepts import (
    name_tokens as name_tokens,  # re-exported only
)
from clinicflow.evals.ehrqa.records import PatientRecord
from clinicflow.fhir.references import OUTSIDE_COMPARTMENTS, reference_key

__all__ = [
    "ACTIVE_CLINICAL",
    "RESOLVED_CLINICAL",
    "ConditionFact",
    "ImmunizationFact",
    "Measurement",
    "MedicationFact",
    "PatientFacts",
    "distinct",
    "extract_facts",
]
__all__ += concepts.__all__

ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
"""Clinical statuses of a condition still present."""
RESOLVED_CLINICAL = frozenset({"inactive", "remission", "resolved"})
"""Clinical statuses of a condition that has ended."""
_DOUBTFUL_VERIFICATION = frozenset(
    {"refuted", "entered-in-error", "unconfirmed", "provisional", "differential"}
)
_PRESCRIBED = frozenset({"active", "stopped", "completed"})
_OBS_OK = frozenset({"final", "amended", "corrected", "preliminary", "registered"})


@dataclass(frozen=True)
class ConditionFact:
    """A Condition: its concept, every code and name it carries, onset and abatement days, status."""

    ref: str
    concept: Concept | None
    codes: frozenset[str]
    names: frozenset[str]
    onset: dt.date | None
    abated: dt.date | None
    clinical: str | None


@dataclass(frozen=True)
class MedicationFact:
    """A MedicationRequest: the medication, status, day authored, prescriber and reasons."""

    ref: str
    concept: Concept | None
    codes: frozenset[str]
    names: frozenset[str]
    by_reference: bool
    status: str
    authored: dt.date | None
    prescriber: str | None
    prescriber_ref: str | None
    encounter_ref: str | None
    reason_refs: tuple[str, ...]
    reason_concepts: tuple[Concept, ...]


@dataclass(frozen=True)
class ImmunizationFact:
    """A completed Immunization: vaccine and day given."""

    ref: str
    concept: Concept | None
    codes: frozenset[str]
    names: frozenset[str]
    day: dt.date | None


@dataclass(frozen=True)
class Measurement:
    """One observed value: a top-level Observation value or one component of a panel.

    `search_code` is the Observation's own code (what a search by code finds); for a component it is the
    panel's code. `value` is set for numeric quantities, `coded` for coded values.
    """

    ref: str
    concept: Concept
    search_code: str
    value: float | None
    unit: str
    coded: Concept | None
    day: dt.date | None
    from_component: bool


@dataclass
class PatientFacts:
    """Everything questions about one patient are computed from."""

    record: PatientRecord
    conditions: list[ConditionFact] = field(default_factory=list)
    medications: list[MedicationFact] = field(default_factory=list)
    immunizations: list[ImmunizationFact] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    tainted: dict[str, set[str]] = field(default_factory=dict)
    codes: dict[str, set[str]] = field(default_factory=dict)
    names: dict[str, set[str]] = field(default_factory=dict)
    latest_day: dt.date | None = None

    @property
    def patient_id(self) -> str:
        return self.record.patient_id

    def is_tainted(self, family: str, code: str) -> bool:
        """Whether a code of this family ('condition', 'medication', 'vaccine', 'observation') is doubtful."""
        return code in self.tainted.get(family, set())

    def mentions(self, family: str, code: str, name: str | None) -> bool:
        """Whether the record holds this code, or this name, anywhere in the family (any status)."""
        if code in self.codes.get(family, set()):
            return True
        return name is not None and norm_text(core_name(name)) in self.names.get(family, set())


_UNITS = {"mm[Hg]": "mmHg", "[lb_av]": "lb", "[in_i]": "in", "[degF]": "°F", "Cel": "°C"}


def _unit(quantity: Mapping[str, Any]) -> str:
    unit = str(quantity.get("unit") or quantity.get("code") or "")
    unit = _UNITS.get(unit, unit)
    return "" if unit.startswith("{") and unit.endswith("}") else unit


def _number(quantity: Any) -> float | None:
    if not isinstance(quantity, Mapping) or quantity.get("comparator"):
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


class _Collector:
    def __init__(self, record: PatientRecord) -> None:
        self.record = record
        self.facts = PatientFacts(record)
        self.days: list[dt.date] = []

    def note(self, family: str, concept: Any) -> None:
        self.facts.codes.setdefault(family, set()).update(all_codes(concept))
        self.facts.names.setdefault(family, set()).update(all_names(concept))

    def taint(self, family: str, concept: Any) -> None:
        self.facts.tainted.setdefault(family, set()).update(all_codes(concept))

    def day(self, value: dt.date | None) -> dt.date | None:
        if value is not None:
            self.days.append(value)
        return value

    def condition(self, r: Mapping[str, Any]) -> None:
        code = r.get("code")
        self.note("condition", code)
        verification = status_code(r.get("verificationStatus"))
        clinical = status_code(r.get("clinicalStatus"))
        if verification in _DOUBTFUL_VERIFICATION or (
            clinical is not None and clinical not in ACTIVE_CLINICAL | RESOLVED_CLINICAL
        ):
            self.taint("condition", code)
            return
        onset = parse_day(r.get("onsetDateTime")) or parse_day((r.get("onsetPeriod") or {}).get("start"))
        abated = parse_day(r.get("abatementDateTime")) or parse_day(
            (r.get("abatementPeriod") or {}).get("end")
        )
        self.facts.conditions.append(
            ConditionFact(
                _ref(r),
                *coded(code, (SNOMED,)),
                onset=self.day(onset),
                abated=abated,
                clinical=clinical,
            )
        )

    def prescriber(self, r: Mapping[str, Any]) -> tuple[str | None, str | None]:
        requester = r.get("requester")
        if isinstance(requester, Mapping):
            key = reference_key(requester)
            if key is not None and key.partition("/")[0] not in OUTSIDE_COMPARTMENTS:
                return None, None  # a patient or related person: never named as a prescriber
            if requester.get("display"):
                return str(requester["display"]), key
            return self._person(key), key
        encounter = self.record.resolve(r.get("encounter"))
        if encounter is None:
            return None, None
        participants = [p for p in encounter.get("participant") or [] if isinstance(p, Mapping)]
        primary = [
            p
            for p in participants
            if any(c.get("code") == "PPRF" for t in p.get("type") or [] for c in codings(t))
        ]
        for participant in primary or participants:
            key = reference_key(participant.get("individual"))
            if key is not None and key.partition("/")[0] in ("Practitioner", "PractitionerRole"):
                return self._person(key), key
        return None, None

    def _person(self, key: str | None) -> str | None:
        resource = self.record.resolve(key)
        if resource is None:
            return None
        if resource.get("resourceType") == "PractitionerRole":
            practitioner = resource.get("practitioner") or {}
            return str(practitioner["display"]) if practitioner.get("display") else None
        return person_name(resource)

    def medication(self, r: Mapping[str, Any]) -> None:
        concept_json = r.get("medicationCodeableConcept")
        by_reference = concept_json is None and isinstance(r.get("medicationReference"), Mapping)
        if by_reference:
            medication = self.record.resolve(r.get("medicationReference"))
            concept_json = (medication or {}).get("code")
        self.note("medication", concept_json)
        status = str(r.get("status") or "")
        if status not in _PRESCRIBED or r.get("intent") not in (None, "order", "original-order", "plan"):
            self.taint("medication", concept_json)
            return
        name, key = self.prescriber(r)
        reasons = tuple(
            str(ref["reference"])
            for ref in r.get("reasonReference") or []
            if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str)
        )
        reason_concepts = tuple(
            c for c in (concept_of(x, (SNOMED,)) for x in r.get("reasonCode") or []) if c is not None
        )
        encounter = (r.get("encounter") or {}).get("reference")
        self.facts.medications.append(
            MedicationFact(
                _ref(r),
                *coded(concept_json, (RXNORM,)),
                by_reference=by_reference,
                status=status,
                authored=self.day(parse_day(r.get("authoredOn"))),
                prescriber=name,
                prescriber_ref=key,
                encounter_ref=encounter if isinstance(encounter, str) else None,
                reason_refs=reasons,
                reason_concepts=reason_concepts,
            )
        )

    def other_medication(self, r: Mapping[str, Any]) -> None:
        concept = r.get("medicationCodeableConcept")
        if concept is None:
            concept = (self.record.resolve(r.get("medicationReference")) or {}).get("code")
        self.note("medication", concept)

    def immunization(self, r: Mapping[str, Any]) -> None:
        code = r.get("vaccineCode")
        self.note("vaccine", code)
        if r.get("status") != "completed" or r.get("isSubpotent") is True:
            self.taint("vaccine", code)
            return
        self.facts.immunizations.append(
            ImmunizationFact(
                _ref(r),
                *coded(code, (CVX,)),
                day=self.day(parse_day(r.get("occurrenceDateTime"))),
            )
        )

    def observation(self, r: Mapping[str, Any]) -> None:
        code = r.get("code")
        self.note("observation", code)
        for comp in r.get("component") or []:
            if isinstance(comp, Mapping):
                self.note("observation", comp.get("code"))
        if r.get("status") not in _OBS_OK:
            self.taint("observation", code)
            for comp in r.get("component") or []:
                if isinstance(comp, Mapping):
                    self.taint("observation", comp.get("code"))
            return
        own = concept_of(code, (LOINC,))
        if own is None:
            return
        effective = r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start")
        day = self.day(parse_day(effective or r.get("effectiveInstant")))
        ref = _ref(r)
        if any(k.startswith("value") for k in r):
            self._value(ref, own, own.code, r, day, from_component=False)
        elif r.get("dataAbsentReason") is None:
            for comp in r.get("component") or []:
                concept = concept_of(comp.get("code"), (LOINC,)) if isinstance(comp, Mapping) else None
                if concept is not None and isinstance(comp, Mapping):
                    self._value(ref, concept, own.code, comp, day, from_component=True)

    def _value(
        self,
        ref: str,
        concept: Concept,
        search_code: str,
        element: Mapping[str, Any],
        day: dt.date | None,
        *,
        from_component: bool,
    ) -> None:
        number = _number(element.get("valueQuantity"))
        coded = concept_of(element.get("valueCodeableConcept"), (SNOMED, LOINC))
        if number is None and coded is None:
            self.facts.tainted.setdefault("observation", set()).add(concept.code)
            return
        unit = _unit(element.get("valueQuantity") or {}) if number is not None else ""
        self.facts.measurements.append(
            Measurement(ref, concept, search_code, number, unit, coded, day, from_component)
        )

    def encounter(self, r: Mapping[str, Any]) -> None:
        self.day(parse_day((r.get("period") or {}).get("start")))

    def finish(self) -> PatientFacts:
        facts = self.facts
        standalone = {m.concept.code for m in facts.measurements if not m.from_component}
        facts.measurements = [
            m for m in facts.measurements if not (m.from_component and m.concept.code in standalone)
        ]
        facts.latest_day = max(self.days) if self.days else None
        return facts


def extract_facts(record: PatientRecord) -> PatientFacts:
    """Read the facts questions are computed from out of one patient's record."""
    collector = _Collector(record)
    handlers = {
        "Condition": collector.condition,
        "MedicationRequest": collector.medication,
        "MedicationAdministration": collector.other_medication,
        "MedicationStatement": collector.other_medication,
        "MedicationDispense": collector.other_medication,
        "Immunization": collector.immunization,
        "Observation": collector.observation,
        "Encounter": collector.encounter,
    }
    for resource in record.resources:
        if resource.get("status") == "entered-in-error":
            for family, path in (
                ("condition", "code"),
                ("medication", "medicationCodeableConcept"),
                ("vaccine", "vaccineCode"),
                ("observation", "code"),
            ):
                collector.taint(family, resource.get(path))
                collector.note(family, resource.get(path))
            continue
        handler = handlers.get(str(resource.get("resourceType")))
        if handler is not None:
            handler(resource)
    return collector.finish()


def distinct(items: Iterable[Any]) -> list[Any]:
    """Items without repeats, first occurrence kept."""
    return list(dict.fromkeys(items))
