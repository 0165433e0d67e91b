"""An independent answer key: recomputes EHRQA answers from the raw bundles with FHIRPath (fhirpathpy).

It shares no code with the generator: resources are selected by FHIRPath over the raw Bundle JSON
(`urn:uuid:` references as written), fields are read with compiled FHIRPath expressions, and each
question type is recomputed from the question's `params`. Where the record cannot settle an answer (an
undated entry among those compared, two values on one day, a doubtful status), the audit answers None,
and a generated question there is a failure too.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import fhirpathpy

from clinicflow.evals.ehrqa.questions import Question

__all__ = ["Audit", "AuditError"]


def _F(path: str) -> Callable[[Any], list[Any]]:
    compiled = fhirpathpy.compile(path)
    return lambda resource: list(compiled(resource, {}))


_BY_TYPE = "Bundle.entry.resource.where(resourceType = %t)"
_PATIENT_REF = _F("(subject | patient).reference")
_CODES = {
    "Condition": _F("Condition.code.coding.code"),
    "MedicationRequest": _F("MedicationRequest.medicationCodeableConcept.coding.code"),
    "Immunization": _F("Immunization.vaccineCode.coding.code"),
    "Observation": _F("Observation.code.coding.code"),
}
_DISPLAYS = {
    "Condition": _F("Condition.code.coding.display"),
    "MedicationRequest": _F("MedicationRequest.medicationCodeableConcept.coding.display"),
    "Immunization": _F("Immunization.vaccineCode.coding.display"),
}
_ONSET = _F("Condition.onsetDateTime | Condition.onsetPeriod.start")
_ABATED = _F("Condition.abatementDateTime | Condition.abatementPeriod.end")
_CLINICAL = _F("Condition.clinicalStatus.coding.code")
_VERIFICATION = _F("Condition.verificationStatus.coding.code")
_AUTHORED = _F("MedicationRequest.authoredOn")
_MR_STATUS = _F("MedicationRequest.status")
_MED_REF = _F("MedicationRequest.medicationReference.reference")
_REQUESTER = _F("MedicationRequest.requester")
_ENCOUNTER = _F("MedicationRequest.encounter.reference")
_REASON_REFS = _F("MedicationRequest.reasonReference.reference")
_REASON_CODE_DISPLAYS = _F("MedicationRequest.reasonCode.coding.display")
_IMM_DAY = _F("Immunization.occurrenceDateTime")
_IMM_STATUS = _F("Immunization.status")
_OBS_DAY = _F("Observation.effectiveDateTime | Observation.effectivePeriod.start")
_OBS_STATUS = _F("Observation.status")
_OBS_VALUE = _F("Observation.valueQuantity.value")
_OBS_CODED = _F("Observation.valueCodeableConcept.coding.display")
_COMPONENTS = _F("Observation.component")
_COMP_CODE = _F("code.coding.code")
_COMP_VALUE = _F("valueQuantity.value")
_MEDICATION_DISPLAY = _F("Medication.code.coding.display")
_MEDICATION_CODES = _F("Medication.code.coding.code")
_NAME = _F("Practitioner.name.where(use = 'official' or use.empty()).first()")
_PPRF = _F("Encounter.participant.where(type.coding.code = 'PPRF').individual.reference")
_PARTICIPANTS = _F("Encounter.participant.individual.reference")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_TAGS = re.compile(r"\s*\((disorder|finding|situation|morphologic abnormality|procedure)\)$")


class AuditError(AssertionError):
    """The audit disagrees with a generated answer."""


def _day(values: list[Any]) -> dt.date | None:
    value = values[0] if values else None
    match = _DAY.match(value) if isinstance(value, str) else None
    return dt.date(int(match[1]), int(match[2]), int(match[3])) if match else None


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", _TAGS.sub("", text).casefold()))


def _tokens(name: str) -> set[str]:
    words = {re.sub(r"[^a-z]", "", w) for w in name.casefold().split()}
    return {w for w in words if w and w not in {"dr", "mr", "mrs", "ms"}}


@dataclass
class _Measure:
    id: str
    code: str
    value: float | None
    coded: str | None
    day: dt.date | None


@dataclass
class _Patient:
    conditions: list[dict[str, Any]] = field(default_factory=list)
    prescriptions: list[dict[str, Any]] = field(default_factory=list)
    immunizations: list[dict[str, Any]] = field(default_factory=list)
    measures: list[_Measure] = field(default_factory=list)


class Audit:
    """Answers recomputed from the raw bundle files of a folder."""

    def __init__(self, folder: Path) -> None:
        self.bundles = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
        self.urls: dict[str, dict[str, Any]] = {}
        self.by_identifier: dict[str, dict[str, Any]] = {}
        for bundle in self.bundles:
            for entry in bundle.get("entry", []):
                resource = entry["resource"]
                self.urls[entry.get("fullUrl", "")] = resource
                self.urls[f"{resource['resourceType']}/{resource.get('id')}"] = resource
                for ident in resource.get("identifier", []):
                    self.by_identifier[
                        f"{resource['resourceType']}?identifier={ident.get('system')}|{ident.get('value')}"
                    ] = resource
        self.patients: dict[str, _Patient] = {}

    def _resolve(self, reference: str | None) -> dict[str, Any] | None:
        return None if reference is None else self.urls.get(reference) or self.by_identifier.get(reference)

    def _select(self, rtype: str, pid: str) -> list[dict[str, Any]]:
        found = []
        for bundle in self.bundles:
            for r in fhirpathpy.evaluate(bundle, _BY_TYPE, {"t": rtype}):
                refs = _PATIENT_REF(r)
                if refs and all(str(x).endswith(pid) for x in refs):
                    found.append(r)
        return found

    def patient(self, pid: str) -> _Patient:
        if pid in self.patients:
            return self.patients[pid]
        p = _Patient()
        for r in self._select("Condition", pid):
            p.conditions.append(
                {
                    "id": f"Condition/{r['id']}",
                    "codes": set(_CODES["Condition"](r)),
                    "names": {_norm(d) for d in _DISPLAYS["Condition"](r)},
                    "onset": _day(_ONSET(r)),
                    "abated": _day(_ABATED(r)),
                    "clinical": (_CLINICAL(r) or [None])[0],
                    "verification": (_VERIFICATION(r) or [None])[0],
                }
            )
        for r in self._select("MedicationRequest", pid):
            codes, names = (
                set(_CODES["MedicationRequest"](r)),
                {_norm(d) for d in _DISPLAYS["MedicationRequest"](r)},
            )
            medication = self._resolve((_MED_REF(r) or [None])[0])
            if medication is not None:
                codes |= set(_MEDICATION_CODES(medication))
                names |= {_norm(d) for d in _MEDICATION_DISPLAY(medication)}
            p.prescriptions.append(
                {
                    "id": f"MedicationRequest/{r['id']}",
                    "codes": codes,
                    "names": names,
                    "status": (_MR_STATUS(r) or [None])[0],
                    "day": _day(_AUTHORED(r)),
                    "prescriber": self._prescriber(r),
                    "reasons": [self._resolve(x) for x in _REASON_REFS(r)],
                    "reason_names": {_norm(d) for d in _REASON_CODE_DISPLAYS(r)},
                }
            )
        for r in self._select("Immunization", pid):
            p.immunizations.append(
                {
                    "id": f"Immunization/{r['id']}",
                    "codes": set(_CODES["Immunization"](r)),
                    "names": {_norm(d) for d in _DISPLAYS["Immunization"](r)},
                    "status": (_IMM_STATUS(r) or [None])[0],
                    "day": _day(_IMM_DAY(r)),
                }
            )
        for r in self._select("Observation", pid):
            if (_OBS_STATUS(r) or [None])[0] not in (
                "final",
                "amended",
                "corrected",
                "preliminary",
                "registered",
            ):
                continue
            day = _day(_OBS_DAY(r))
            values = _OBS_VALUE(r)
            coded = _OBS_CODED(r)
            for code in _CODES["Observation"](r):
                p.measures.append(
                    _Measure(r["id"], code, _float(values), _norm(coded[0]) if coded else None, day)
                )
            for comp in _COMPONENTS(r):
                for code in _COMP_CODE(comp):
                    p.measures.append(_Measure(r["id"], code, _float(_COMP_VALUE(comp)), None, day))
        self.patients[pid] = p
        return p

    def _prescriber(self, r: dict[str, Any]) -> str | None:
        requester = (_REQUESTER(r) or [None])[0]
        if isinstance(requester, dict):
            if requester.get("display"):
                return str(requester["display"])
            return _person(self._resolve(requester.get("reference")))
        encounter = self._resolve((_ENCOUNTER(r) or [None])[0])
        if encounter is None:
            return None
        for ref in _PPRF(encounter) or _PARTICIPANTS(encounter):
            resource = self._resolve(ref)
            if resource is not None and resource.get("resourceType") == "Practitioner":
                return _person(resource)
        return None

    # -- recomputation --------------------------------------------------------------------------

    def answer(self, q: Question) -> str | None:
        """The audit's answer in the question's answer form ('yes'/'no', a letter, a value), or None."""
        handler: Callable[[Question, _Patient], Any] | None = getattr(self, f"_{q.qtype}", None)
        if handler is None:
            raise AuditError(f"the audit has no rule for question type {q.qtype}")
        value = handler(q, self.patient(q.patient_id))
        if value is None:
            return None
        if q.kind == "yes_no":
            return "yes" if value else "no"
        if q.kind == "choice":
            wanted = _norm(str(value))
            letters = [("ABCD"[i]) for i, opt in enumerate(q.options) if _norm(opt) == wanted]
            return letters[0] if len(letters) == 1 else None
        if isinstance(value, dt.date):
            return value.isoformat()
        return str(value)

    def check(self, q: Question) -> None:
        """Raise AuditError unless the audit settles the question and agrees with its answer."""
        got = self.answer(q)
        if got is None:
            raise AuditError(f"{q.id} {q.qtype}: the audit cannot settle {q.text!r} (generated {q.answer!r})")
        if q.kind in ("number",):
            if abs(float(got) - float(q.answer)) > (q.tolerance or 0) + 1e-6:
                raise AuditError(f"{q.id} {q.qtype}: audit {got} != generated {q.answer} for {q.text!r}")
        elif q.kind == "name":
            if _tokens(got) != _tokens(q.answer):
                raise AuditError(f"{q.id} {q.qtype}: audit {got!r} != generated {q.answer!r}")
        elif q.kind == "text":
            if _norm(got) != _norm(q.answer):
                raise AuditError(f"{q.id} {q.qtype}: audit {got!r} != generated {q.answer!r}")
        elif got != q.answer:
            raise AuditError(f"{q.id} {q.qtype}: audit {got!r} != generated {q.answer!r} for {q.text!r}")

    # conditions

    def _conds(self, p: _Patient, code: str) -> list[dict[str, Any]] | None:
        found = [c for c in p.conditions if code in c["codes"]]
        if any(c["verification"] not in (None, "confirmed") for c in found):
            return None
        return found

    def _first(self, items: list[dict[str, Any]] | None, key: str = "onset") -> dt.date | None:
        if not items or any(c[key] is None for c in items):
            return None
        return min(c[key] for c in items)

    def _cond_exists(self, q: Question, p: _Patient) -> bool | None:
        found = self._conds(p, q.params["code"])
        return None if found is None else bool(found)

    def _cond_pick(self, q: Question, p: _Patient) -> str | None:
        if any(self._cond_exists_code(p, c) for c in q.params["wrong_codes"]):
            return None
        found = self._conds(p, q.params["code"])
        return self._display(found) if found else None

    def _cond_exists_code(self, p: _Patient, code: str) -> bool:
        return any(code in c["codes"] for c in p.conditions)

    def _display(self, found: list[dict[str, Any]]) -> str | None:
        names = set().union(*(c["names"] for c in found))
        return next(iter(names)) if len(names) == 1 else None

    def _cond_first_onset(self, q: Question, p: _Patient) -> dt.date | None:
        return self._first(self._conds(p, q.params["code"]))

    def _cond_count(self, q: Question, p: _Patient) -> int | None:
        found = self._conds(p, q.params["code"])
        return len(found) if found else None

    def _cond_before(self, q: Question, p: _Patient) -> bool | None:
        a = self._first(self._conds(p, q.params["code_a"]))
        b = self._first(self._conds(p, q.params["code_b"]))
        return None if a is None or b is None or a == b else a < b

    def _cond_days_between(self, q: Question, p: _Patient) -> int | None:
        a = self._first(self._conds(p, q.params["code_a"]))
        b = self._first(self._conds(p, q.params["code_b"]))
        return None if a is None or b is None else abs((b - a).days)

    def _cond_active(self, q: Question, p: _Patient) -> bool | None:
        ref = dt.date.fromisoformat(q.params["ref"])
        found = self._conds(p, q.params["code"])
        if not found:
            return None
        active = False
        for c in found:
            ended = c["abated"] is not None and c["abated"] <= ref
            if c["clinical"] in ("active", "recurrence", "relapse") and not ended:
                if c["abated"] is not None:
                    return None
                active = True
            elif not ended and c["clinical"] not in ("inactive", "remission", "resolved"):
                return None
        return active

    # transitive conditions, through the packaged table (the table defines the hierarchy)

    def _below(self, code: str) -> set[str]:
        from importlib import resources

        table = json.loads(
            resources.files("clinicflow.evals.ehrqa").joinpath("data", "snomed_hierarchy.json").read_text()
        )["concepts"]
        below: set[str] = set()
        frontier = {code}
        while frontier:
            frontier = {c for c, e in table.items() if set(e["parents"]) & frontier} - below
            below |= frontier
        return below

    def _members(self, q: Question, p: _Patient) -> dict[str, list[dict[str, Any]]]:
        below = self._below(q.params["group"])
        out: dict[str, list[dict[str, Any]]] = {}
        for c in p.conditions:
            for code in c["codes"] & below:
                out.setdefault(code, []).append(c)
        return out

    def _trans_exists(self, q: Question, p: _Patient) -> bool:
        return bool(self._members(q, p))

    def _trans_pick(self, q: Question, p: _Patient) -> str | None:
        members = self._members(q, p)
        if q.params["code"] not in members:
            return None
        correct = self._display(members[q.params["code"]])
        names = {n for found in members.values() for c in found for n in c["names"]}
        if any(_norm(opt) in names and _norm(opt) != correct for opt in q.options):
            return None
        return correct

    def _trans_first(self, q: Question, p: _Patient) -> dt.date | None:
        members = self._members(q, p)
        return self._first([c for found in members.values() for c in found]) if members else None

    def _trans_count(self, q: Question, p: _Patient) -> int:
        return len(self._members(q, p))

    # immunizations

    def _doses(self, p: _Patient, code: str) -> list[dict[str, Any]] | None:
        found = [i for i in p.immunizations if code in i["codes"]]
        if any(i["status"] != "completed" or i["day"] is None for i in found):
            return None
        return found

    def _imm_last_date(self, q: Question, p: _Patient) -> dt.date | None:
        doses = self._doses(p, q.params["code"])
        return max(i["day"] for i in doses) if doses else None

    def _imm_first_date(self, q: Question, p: _Patient) -> dt.date | None:
        doses = self._doses(p, q.params["code"])
        return min(i["day"] for i in doses) if doses else None

    def _imm_count(self, q: Question, p: _Patient) -> int | None:
        doses = self._doses(p, q.params["code"])
        ref = dt.date.fromisoformat(q.params["ref"])
        return None if doses is None else sum(i["day"] <= ref for i in doses)

    def _imm_days_between(self, q: Question, p: _Patient) -> int | None:
        doses = self._doses(p, q.params["code"])
        days = sorted(i["day"] for i in doses or [])
        if len(days) < 2 or days[0] == days[1]:
            return None
        return (days[1] - days[0]).days

    def _imm_in_year(self, q: Question, p: _Patient) -> bool | None:
        doses = self._doses(p, q.params["code"])
        return None if doses is None else any(i["day"].year == q.params["year"] for i in doses)

    def _imm_on_date_pick(self, q: Question, p: _Patient) -> str | None:
        when = dt.date.fromisoformat(q.params["day"])
        given = [i for i in p.immunizations if q.params["code"] in i["codes"] and i["day"] == when]
        if not given:
            return None
        for option in q.options:
            others = [i for i in p.immunizations if _norm(option) in i["names"] and i["day"] == when]
            if others and _norm(option) not in given[0]["names"]:
                return None
        return next(iter(given[0]["names"]))

    # prescriptions

    def _rx(self, p: _Patient, code: str) -> list[dict[str, Any]] | None:
        found = [m for m in p.prescriptions if code in m["codes"]]
        if any(m["status"] not in ("active", "stopped", "completed") for m in found):
            return None
        return found

    def _rx_on(self, p: _Patient, code: str, day: str) -> dict[str, Any] | None:
        found = [m for m in self._rx(p, code) or [] if m["day"] == dt.date.fromisoformat(day)]
        return found[0] if len(found) == 1 else None

    def _med_current(self, q: Question, p: _Patient) -> bool | None:
        found = self._rx(p, q.params["code"])
        if found is None or any(m["day"] is None for m in found):
            return None
        ref = dt.date.fromisoformat(q.params["ref"])
        return any(m["status"] == "active" and m["day"] <= ref for m in found)

    def _med_current_pick(self, q: Question, p: _Patient) -> str | None:
        return self._display(self._rx(p, q.params["code"]) or []) if self._med_current(q, p) else None

    def _med_current_count(self, q: Question, p: _Patient) -> int | None:
        ref = dt.date.fromisoformat(q.params["ref"])
        if any(
            m["day"] is None or m["status"] not in ("active", "stopped", "completed") for m in p.prescriptions
        ):
            return None
        codes = {
            frozenset(m["codes"]) for m in p.prescriptions if m["status"] == "active" and m["day"] <= ref
        }
        return len(codes)

    def _med_status(self, q: Question, p: _Patient) -> str | None:
        found = self._rx(p, q.params["code"])
        if not found or any(m["day"] is None for m in found):
            return None
        last = max(m["day"] for m in found)
        latest = [m for m in found if m["day"] == last]
        return latest[0]["status"] if len(latest) == 1 else None

    def _med_exists(self, q: Question, p: _Patient) -> bool:
        return any(q.params["code"] in m["codes"] for m in p.prescriptions)

    def _med_exists_pick(self, q: Question, p: _Patient) -> str | None:
        if any(any(c in m["codes"] for m in p.prescriptions) for c in q.params["wrong_codes"]):
            return None
        return self._display(self._rx(p, q.params["code"]) or [])

    def _med_rx_count(self, q: Question, p: _Patient) -> int | None:
        found = self._rx(p, q.params["code"])
        return len(found) if found else None

    def _med_in_year(self, q: Question, p: _Patient) -> bool | None:
        found = self._rx(p, q.params["code"])
        if found is None or any(m["day"] is None for m in found):
            return None
        return any(m["day"].year == q.params["year"] for m in found)

    def _presc_name(self, q: Question, p: _Patient) -> str | None:
        m = self._rx_on(p, q.params["code"], q.params["day"])
        return m["prescriber"] if m else None

    def _presc_pick(self, q: Question, p: _Patient) -> str | None:
        name = self._presc_name(q, p)
        if name is None:
            return None
        matches = [opt for opt in q.options if _tokens(opt) == _tokens(name)]
        return matches[0] if len(matches) == 1 else None

    def _presc_check(self, q: Question, p: _Patient) -> bool | None:
        name = self._presc_name(q, p)
        return None if name is None else _tokens(name) == _tokens(q.params["person"])

    def _rx_days(self, p: _Patient, code: str) -> list[dt.date] | None:
        found = self._rx(p, code)
        if not found or any(m["day"] is None for m in found):
            return None
        return sorted({m["day"] for m in found})

    def _rx_first_date(self, q: Question, p: _Patient) -> dt.date | None:
        days = self._rx_days(p, q.params["code"])
        return days[0] if days else None

    def _rx_last_date(self, q: Question, p: _Patient) -> dt.date | None:
        days = self._rx_days(p, q.params["code"])
        return days[-1] if days else None

    def _rx_days_before_ref(self, q: Question, p: _Patient) -> int | None:
        days = self._rx_days(p, q.params["code"])
        return (dt.date.fromisoformat(q.params["ref"]) - days[-1]).days if days else None

    def _rx_days_between(self, q: Question, p: _Patient) -> int | None:
        a, b = self._rx_days(p, q.params["code_a"]), self._rx_days(p, q.params["code_b"])
        return abs((b[0] - a[0]).days) if a and b else None

    def _rx_on_date_pick(self, q: Question, p: _Patient) -> str | None:
        when = dt.date.fromisoformat(q.params["day"])
        that_day = [m for m in p.prescriptions if m["day"] == when]
        chosen = [m for m in that_day if q.params["code"] in m["codes"]]
        if not chosen:
            return None
        for option in q.options:
            if _norm(option) not in chosen[0]["names"] and any(_norm(option) in m["names"] for m in that_day):
                return None
        return next(iter(chosen[0]["names"]))

    def _reason(self, q: Question, p: _Patient) -> str | None:
        m = self._rx_on(p, q.params["code"], q.params["day"])
        if m is None:
            return None
        names = {_norm(d) for r in m["reasons"] if r for d in _DISPLAYS["Condition"](r)} | m["reason_names"]
        return next(iter(names)) if len(names) == 1 else None

    def _reason_condition(self, q: Question, p: _Patient) -> str | None:
        return self._reason(q, p)

    def _reason_pick(self, q: Question, p: _Patient) -> str | None:
        return self._reason(q, p)

    def _reason_check(self, q: Question, p: _Patient) -> bool | None:
        name = self._reason(q, p)
        return None if name is None else name == _norm(q.params["condition"])

    def _reason_med_pick(self, q: Question, p: _Patient) -> str | None:
        condition_id = q.params["condition"].split("/")[1]
        linked = [
            m
            for m in p.prescriptions
            if q.params["code"] in m["codes"] and any(r and r.get("id") == condition_id for r in m["reasons"])
        ]
        return self._display(linked) if linked else None

    # observations

    def _series(self, p: _Patient, code: str) -> list[_Measure] | None:
        found = [m for m in p.measures if m.code == code]
        if not found or any(m.day is None for m in found):
            return None
        return found

    def _on(self, series: list[_Measure], when: dt.date) -> float | str | None:
        values = {_round(m.value) if m.value is not None else m.coded for m in series if m.day == when}
        return next(iter(values)) if len(values) == 1 else None

    def _obs_on_date(self, q: Question, p: _Patient) -> float | str | None:
        series = self._series(p, q.params["code"])
        return self._on(series, dt.date.fromisoformat(q.params["day"])) if series else None

    def _obs_pick(self, q: Question, p: _Patient) -> str | None:
        value = self._obs_on_date(q, p)
        if value is None:
            return None
        matches = [opt for opt in q.options if abs(float(opt.split()[0]) - float(value)) < 1e-6]
        return matches[0] if len(matches) == 1 else None

    def _obs_coded(self, q: Question, p: _Patient) -> str | None:
        value = self._obs_on_date(q, p)
        return str(value) if value is not None else None

    def _obs_latest(self, q: Question, p: _Patient) -> float | str | None:
        series = self._series(p, q.params["code"])
        ref = dt.date.fromisoformat(q.params["ref"])
        days = sorted({m.day for m in series or [] if m.day and m.day <= ref})
        return self._on(series or [], days[-1]) if days else None

    def _obs_closest(self, q: Question, p: _Patient) -> float | str | None:
        series = self._series(p, q.params["code"])
        if not series:
            return None
        target = dt.date.fromisoformat(q.params["target"])
        ranked = sorted({m.day for m in series if m.day}, key=lambda d: abs((d - target).days))
        if len(ranked) > 1 and abs((ranked[0] - target).days) == abs((ranked[1] - target).days):
            return None
        return self._on(series, ranked[0])

    def _obs_extreme_year(self, q: Question, p: _Patient) -> float | None:
        series = self._series(p, q.params["code"])
        values = [
            m.value for m in series or [] if m.day and m.day.year == q.params["year"] and m.value is not None
        ]
        if not values:
            return None
        return _round(max(values) if q.params["highest"] else min(values))

    def _obs_change(self, q: Question, p: _Patient) -> float | None:
        series = self._series(p, q.params["code"])
        if not series:
            return None
        a = self._on(series, dt.date.fromisoformat(q.params["day_a"]))
        b = self._on(series, dt.date.fromisoformat(q.params["day_b"]))
        return None if a is None or b is None else round(float(b) - float(a), 2)

    def _value_on(self, p: _Patient, code: str, when: dt.date | None) -> float | str | None:
        series = self._series(p, code)
        return self._on(series, when) if series and when else None

    def _dep_at_condition(self, q: Question, p: _Patient) -> float | str | None:
        return self._value_on(p, q.params["code"], self._first(self._conds(p, q.params["condition"])))

    def _dep_above_at_condition(self, q: Question, p: _Patient) -> bool | None:
        value = self._dep_at_condition(q, p)
        return None if value is None else float(value) > float(q.params["threshold"])

    def _dep_before_med(self, q: Question, p: _Patient) -> float | str | None:
        days = self._rx_days(p, q.params["medication"])
        series = self._series(p, q.params["code"])
        if not days or not series:
            return None
        earlier = sorted({m.day for m in series if m.day and m.day <= days[0]})
        return self._on(series, earlier[-1]) if earlier else None

    def _dep_at_vaccine(self, q: Question, p: _Patient) -> float | str | None:
        doses = self._doses(p, q.params["vaccine"])
        first = min((i["day"] for i in doses), default=None) if doses else None
        return self._value_on(p, q.params["code"], first)

    def _dep_at_peak(self, q: Question, p: _Patient) -> float | str | None:
        series = self._series(p, q.params["peak_code"])
        in_year = [
            m for m in series or [] if m.day and m.day.year == q.params["year"] and m.value is not None
        ]
        if not in_year:
            return None
        top = max(_round(m.value) for m in in_year)
        peaks = {m.day for m in in_year if _round(m.value) == top}
        return self._value_on(p, q.params["code"], next(iter(peaks))) if len(peaks) == 1 else None


def _float(values: list[Any]) -> float | None:
    value = values[0] if values else None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


def _round(value: float | None) -> float:
    return round(float(value or 0.0), 2)


def _person(resource: dict[str, Any] | None) -> str | None:
    if resource is None:
        return None
    name = (_NAME(resource) or [None])[0]
    if not isinstance(name, dict):
        return None
    return " ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")]).strip() or None
