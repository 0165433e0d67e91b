"""Overdue monitoring for the patient-view hook: tests the shipped guidelines name, with their interval.

Each rule is one sentence of a shipped guideline (checked at import to be there, under the section it
cites): a condition that calls for a test, and how often. A patient with an active matching condition
whose newest result of that test is older than the interval (or absent) gets a card citing the
Condition, the newest Observation (if any) and the guideline section.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from clinicflow.tools.guidelines import SHIPPED_CORPUS
from clinicflow.tools.render import concept_text, resource_date

__all__ = ["MONITORING", "MonitoringRule", "Overdue", "monitoring_codes", "overdue_monitoring"]

_DIABETES_SNOMED = {"44054006", "73211009", "46635009", "190330002", "190331003", "313436004"}
_CKD_SNOMED = {"709044004", "431855005", "431856006", "433144002", "431857002", "433146000"}
_EGFR_LOINC = ("33914-3", "62238-1", "48642-3", "48643-1", "98979-8", "69405-9")


@dataclass(frozen=True)
class MonitoringRule:
    """A test the guideline asks for, for patients with one of the conditions, every `interval_days`."""

    name: str
    condition_snomed: frozenset[str]
    condition_icd10_prefixes: tuple[str, ...]
    test_loinc: tuple[str, ...]
    interval_days: int
    guideline_file: str
    sentence: str

    def has_condition(self, condition: Mapping[str, Any]) -> bool:
        for coding in condition.get("code", {}).get("coding", []):
            system, code = str(coding.get("system") or ""), str(coding.get("code") or "")
            if "snomed" in system and code in self.condition_snomed:
                return True
            if "icd-10" in system and code.upper().startswith(self.condition_icd10_prefixes):
                return True
        return False

    def is_result(self, observation: Mapping[str, Any]) -> bool:
        codings = observation.get("code", {}).get("coding", [])
        return any("loinc" in str(c.get("system")) and c.get("code") in self.test_loinc for c in codings)

    def citation(self) -> str:
        title, section = _section_of(self.guideline_file, self.sentence)
        return f"guideline: {title} § {section}"


_HBA1C_LOINC = ("4548-4", "17856-6", "41995-2")
_ACR_LOINC = ("9318-7", "14959-1", "32294-1")
_DIABETES = (frozenset(_DIABETES_SNOMED), ("E10", "E11", "E13"))
_CKD = (frozenset(_CKD_SNOMED), ("N18",))
_DIABETES_MD = "diabetes-glycemic-targets.md"
_CKD_MD = "ckd-staging.md"
_HBA1C_SAYS = (
    "Check HbA1c at least twice a year in people who are meeting their goals and have stable control"
)
_ACR_SAYS = "Measure the urine albumin-to-creatinine ratio and eGFR at least once a year."
_CKD_SAYS = "Measure eGFR and ACR at least once a year in people with CKD"
# Each rule: test name, condition codes (SNOMED, ICD-10 prefixes), test LOINC codes, interval in days,
# the guideline file and its sentence.
MONITORING: tuple[MonitoringRule, ...] = (
    MonitoringRule("HbA1c", *_DIABETES, _HBA1C_LOINC, 183, _DIABETES_MD, _HBA1C_SAYS),
    MonitoringRule("Urine albumin-to-creatinine ratio", *_DIABETES, _ACR_LOINC, 365, _DIABETES_MD, _ACR_SAYS),
    MonitoringRule("eGFR", *_DIABETES, _EGFR_LOINC, 365, _DIABETES_MD, _ACR_SAYS),
    MonitoringRule("eGFR", *_CKD, _EGFR_LOINC, 365, _CKD_MD, _CKD_SAYS),
)


@cache
def _section_of(filename: str, sentence: str) -> tuple[str, str]:
    """(title, section heading) of the shipped guideline paragraph holding `sentence`."""
    text = (SHIPPED_CORPUS / filename).read_text(encoding="utf-8")
    title, section = "", ""
    for line in text.splitlines():
        if line.startswith("title:"):
            title = line.removeprefix("title:").strip()
        elif line.startswith("## "):
            section = line[3:].strip()
        elif sentence in line:
            return title, section
    raise LookupError(f"{filename} does not say: {sentence!r}")


def monitoring_codes() -> str:
    """The LOINC codes of every rule, as one FHIR `code` search value."""
    return ",".join(f"http://loinc.org|{code}" for rule in MONITORING for code in rule.test_loinc)


def _day(resource: Mapping[str, Any]) -> date | None:
    when = resource_date(resource)
    try:
        return date.fromisoformat(when[:10]) if when else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Overdue:
    """One rule a patient is due for: the condition behind it and the newest result, if any."""

    rule: MonitoringRule
    condition: Mapping[str, Any]
    last: Mapping[str, Any] | None
    last_day: date | None

    def line(self) -> str:
        condition = f"{concept_text(self.condition.get('code'))} [Condition/{self.condition['id']}]"
        if self.last is None or self.last_day is None:
            result = "no result in the record"
        else:
            result = f"last result {self.last_day.isoformat()} [Observation/{self.last['id']}]"
        every = f"every {self.rule.interval_days} days"
        return f"{self.rule.name} due ({every} for {condition}): {result} [{self.rule.citation()}]"


def overdue_monitoring(
    conditions: Iterable[Mapping[str, Any]],
    observations: Iterable[Mapping[str, Any]],
    today: date | None = None,
) -> list[Overdue]:
    """The rules the patient is overdue for, given their active conditions and their results."""
    today = today or datetime.now(UTC).date()
    conditions, observations = list(conditions), list(observations)
    due: list[Overdue] = []
    for rule in MONITORING:
        if any(d.rule.name == rule.name for d in due):
            continue  # one card per test, from the first rule that calls for it
        condition = next((c for c in conditions if rule.has_condition(c)), None)
        if condition is None:
            continue
        dated = [(d, o) for o in observations if rule.is_result(o) and (d := _day(o)) is not None]
        last_day, last = max(dated, key=lambda pair: pair[0]) if dated else (None, None)
        if last_day is None or (today - last_day).days > rule.interval_days:
            due.append(Overdue(rule, condition, last, last_day))
    return due
