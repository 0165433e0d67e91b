"""Patient-scoped FHIR tools: a manifest of the record and a search by type, code, text and dates.

The patient id comes from graph state (`InjectedState("patient_id")`) and never appears in the schema
the model sees. Every query carries `patient=<id>`, and every returned resource is checked to reference
that patient; anything else is dropped.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, get_args

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.prebuilt import InjectedState
from pydantic import ValidationError

from clinicflow.fhir import FhirBadRequestError, FhirClient, FhirError, FhirNotFoundError
from clinicflow.fhir.references import (
    OUTSIDE_COMPARTMENTS,
    PATIENT_COMPARTMENT,
    belongs_to_patient,
    reference_key,
)

from .errors import BAD_ARGUMENTS, BadToolArguments, ToolFailed
from .manifest import build_manifest, render_manifest, resource_codings
from .render import (
    References,
    concept_text,
    estimate_tokens,
    human_name,
    render_lines,
    render_resource,
    resource_date,
)

__all__ = [
    "BAD_ARGUMENTS",
    "PATIENT_NOT_FOUND",
    "SEARCHABLE_TYPES",
    "TOOL_FAILED",
    "BadToolArguments",
    "RecordQuery",
    "RecordReader",
    "ResourceType",
    "SearchResult",
    "ToolFailed",
    "make_fhir_tools",
]

log = logging.getLogger(__name__)

ResourceType = Literal[
    "Patient",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationAdministration",
    "MedicationStatement",
    "Immunization",
    "Procedure",
    "Encounter",
    "DiagnosticReport",
    "AllergyIntolerance",
    "CarePlan",
    "DocumentReference",
    "ImagingStudy",
    "Device",
    "Coverage",
]
SEARCHABLE_TYPES: tuple[str, ...] = get_args(ResourceType)

TOOL_FAILED = "Tool failed: FHIR server error: {detail}"
PATIENT_NOT_FOUND = "Tool failed: patient {patient_id!r} not found on the FHIR server"
NO_PATIENT = "Tool failed: no patient is in context"
NOT_FOUND = "No {what} found in the record{criteria} (not found in the record)."


@dataclass(frozen=True)
class _Params:
    patient: str = "patient"
    code: str | None = "code"
    date: str | None = "date"


_PARAMS: dict[str, _Params] = {
    "Condition": _Params(date="onset-date"),
    "Observation": _Params(),
    "MedicationRequest": _Params(date="authoredon"),
    "MedicationAdministration": _Params(date="effective-time"),
    "MedicationStatement": _Params(date="effective"),
    "Immunization": _Params(code="vaccine-code"),
    "Procedure": _Params(),
    "Encounter": _Params(code="type"),
    "DiagnosticReport": _Params(),
    "AllergyIntolerance": _Params(),
    "CarePlan": _Params(code="category"),
    "DocumentReference": _Params(code="type"),
    "ImagingStudy": _Params(code=None, date="started"),
    "Device": _Params(code="type", date=None),
    "Coverage": _Params(code="type", date=None),
}
_SYSTEMS = {
    "loinc": "http://loinc.org",
    "snomed": "http://snomed.info/sct",
    "sct": "http://snomed.info/sct",
    "snomedct": "http://snomed.info/sct",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "cvx": "http://hl7.org/fhir/sid/cvx",
    "icd10": "http://hl7.org/fhir/sid/icd-10-cm",
}
_BARE_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]*$")
_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_TEXT_KEYS = frozenset({"display", "text", "valueString", "conclusion", "description", "title"})
_MAX_LIMIT = 100
_DEFAULT_LIMIT = 25
_MAX_REFERENCES = 400
_ID_CHUNK = 50
_READ_CONCURRENCY = 4
_KNOWN_PATIENTS_CAP = 1024
_HINT = "narrow by code or date"
_MANIFEST_DESCRIPTION = (
    "Overview of the patient's record: resource types with counts and date spans, and the most frequent "
    "codes per type (code, display, count). Call it first to choose what to search."
)


@dataclass(frozen=True)
class RecordQuery:
    """A validated search of one patient's record; build it with `RecordQuery.parse`."""

    resource_type: str
    system: str | None = None
    code: str | None = None
    code_text: str | None = None
    text: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    limit: int = _DEFAULT_LIMIT

    @classmethod
    def parse(
        cls,
        resource_type: str,
        code: str | None = None,
        text: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        limit: int | None = None,
    ) -> RecordQuery:
        """Validate model-supplied arguments; raises `BadToolArguments` naming what is allowed."""
        if resource_type not in SEARCHABLE_TYPES:
            raise BadToolArguments(
                f"unknown resource_type {resource_type!r}; use one of {', '.join(SEARCHABLE_TYPES)}"
            )
        system, token, code_text = _parse_code(code)
        start = _parse_date("date_from", date_from, end=False)
        stop = _parse_date("date_to", date_to, end=True)
        if start and stop and start > stop:
            raise BadToolArguments(f"date_from {date_from!r} is after date_to {date_to!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise BadToolArguments(f"limit must be a whole number from 1 to {_MAX_LIMIT}, got {limit!r}")
        text = text.strip() if isinstance(text, str) and text.strip() else None
        return cls(
            resource_type=resource_type,
            system=system,
            code=token,
            code_text=code_text,
            text=text,
            date_from=start,
            date_to=stop,
            limit=min(limit or _DEFAULT_LIMIT, _MAX_LIMIT),
        )

    def describe(self) -> str:
        """The criteria in words, for headers and not-found messages."""
        parts: list[str] = []
        if self.code:
            parts.append(f"code {self.system + '|' if self.system else ''}{self.code}")
        if self.code_text:
            parts.append(f"code matching {self.code_text!r}")
        if self.text:
            parts.append(f"text {self.text!r}")
        if self.date_from or self.date_to:
            parts.append(f"dated {self.date_from or '…'} to {self.date_to or '…'}")
        return ", ".join(parts)


def _parse_code(code: str | None) -> tuple[str | None, str | None, str | None]:
    if code is None or not code.strip():
        return None, None, None
    code = code.strip()
    if "|" in code:
        system, _, value = code.partition("|")
        system, value = system.strip(), value.strip()
        if not value:
            raise BadToolArguments(f"code {code!r} has no code after '|'; give system|code or a bare code")
        return _SYSTEMS.get(system.lower().replace(" ", ""), system) or None, value, None
    if _BARE_CODE.match(code) and any(ch.isdigit() for ch in code):
        return None, code, None
    return None, None, code


def _parse_date(name: str, value: str | None, *, end: bool) -> str | None:
    if value is None or not str(value).strip():
        return None
    match = _DATE.match(str(value).strip())
    try:
        if not match:
            raise ValueError
        year, month, day = int(match.group(1)), match.group(2), match.group(3)
        if month is None:
            return dt.date(year, 12 if end else 1, 31 if end else 1).isoformat()
        if day is None:
            last = calendar.monthrange(year, int(month))[1]
            return dt.date(year, int(month), last if end else 1).isoformat()
        return dt.date(year, int(month), int(day)).isoformat()
    except ValueError:
        raise BadToolArguments(f"{name} {value!r} is not a date; use YYYY-MM-DD (or YYYY-MM, YYYY)") from None


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^\w]+", text.casefold()) if w]


def _matches_words(query: str, haystack: str) -> bool:
    folded = haystack.casefold()
    return all(word in folded for word in _words(query))


def _collect_text(node: Any, out: list[str]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in _TEXT_KEYS and isinstance(value, str):
                out.append(value)
            elif not (key in ("text", "content") and isinstance(value, Mapping)):
                _collect_text(value, out)
    elif isinstance(node, list):
        for item in node:
            _collect_text(item, out)


def _searchable_text(resource: Mapping[str, Any]) -> str:
    out: list[str] = []
    _collect_text(resource, out)
    return " ".join(out)


def _code_matches(resource: Mapping[str, Any], query: RecordQuery) -> bool:
    codings = resource_codings(resource)
    if query.code is not None:
        return any(
            str(c.get("code")) == query.code and (query.system is None or c.get("system") == query.system)
            for c in codings
        )
    if query.code_text is not None:
        return _matches_words(query.code_text, " ".join(str(c.get("display") or "") for c in codings))
    return True


def _in_dates(resource: Mapping[str, Any], query: RecordQuery) -> bool:
    if not (query.date_from or query.date_to):
        return True
    day = (resource_date(resource) or "")[:10]
    if not day:
        return False
    return (query.date_from or "") <= day <= (query.date_to or "9999-12-31")


@dataclass(frozen=True)
class SearchResult:
    """Matching resources of one patient, newest first, and how many the server sent that were dropped."""

    query: RecordQuery
    resources: list[dict[str, Any]]
    foreign_dropped: int = 0
    fetch_capped: bool = False
    refs: References | None = None


class RecordReader:
    """Reads one patient's record through a shared `FhirClient`; the engine behind the FHIR tools."""

    def __init__(
        self,
        client: FhirClient,
        *,
        token_budget: int = 1200,
        manifest_budget: int = 1500,
        max_fetch: int = 2000,
    ) -> None:
        self.client = client
        self.token_budget = token_budget
        self.manifest_budget = manifest_budget
        self.max_fetch = max_fetch
        self._known_patients: dict[str, dict[str, Any]] = {}

    async def patient(self, patient_id: str) -> dict[str, Any]:
        """The Patient resource; raises `ToolFailed` when it does not exist."""
        if not patient_id or not isinstance(patient_id, str):
            raise ToolFailed(NO_PATIENT)
        cached = self._known_patients.get(patient_id)
        if cached is not None:
            return cached
        try:
            patient = await self.client.read("Patient", patient_id)
        except (FhirNotFoundError, ValueError):
            raise ToolFailed(PATIENT_NOT_FOUND.format(patient_id=patient_id)) from None
        if len(self._known_patients) >= _KNOWN_PATIENTS_CAP:
            self._known_patients.pop(next(iter(self._known_patients)))
        self._known_patients[patient_id] = patient
        return patient

    async def _fetch(self, patient_id: str, query: RecordQuery, *, use_code: bool) -> tuple[list[dict], bool]:
        params = _PARAMS[query.resource_type]
        search = self.client.search(query.resource_type).where({params.patient: patient_id})
        if use_code and query.code and params.code:
            search = search.token(params.code, query.system, query.code)
        if params.date and query.date_from:
            widened = dt.date.fromisoformat(query.date_from) - dt.timedelta(days=1)
            search = search.date(params.date, "ge", widened.isoformat())
        if params.date and query.date_to:
            widened = dt.date.fromisoformat(query.date_to) + dt.timedelta(days=1)
            search = search.date(params.date, "le", widened.isoformat())
        try:
            found = await search.all(limit=self.max_fetch)
        except FhirBadRequestError as exc:
            log.info("server rejected %s (%s); retrying with the patient filter only", search.params(), exc)
            plain = self.client.search(query.resource_type).where({params.patient: patient_id})
            found = await plain.all(limit=self.max_fetch)
        return found, len(found) >= self.max_fetch

    async def search(self, patient_id: str, query: RecordQuery) -> SearchResult:
        """Resources of the patient matching the query, newest first (all of them, not cut to the limit)."""
        patient = await self.patient(patient_id)
        if query.resource_type == "Patient":
            return SearchResult(query=query, resources=[patient])
        found, capped = await self._fetch(patient_id, query, use_code=True)
        kept, dropped = self._filter(found, patient_id, query)
        if not kept and query.code and not query.system:
            retry = replace(query, code=None, code_text=query.code)
            found, capped = await self._fetch(patient_id, retry, use_code=False)
            kept, dropped = self._filter(found, patient_id, retry)
        if dropped:
            log.warning(
                "dropped %d %s resources not belonging to patient %s",
                dropped,
                query.resource_type,
                patient_id,
            )
        refs = None
        if query.text and kept:
            refs = await self.references(patient_id, kept)
            kept = [
                r
                for r in kept
                if _matches_words(query.text, f"{_searchable_text(r)} {render_resource(r, refs)}")
            ]
        kept.sort(key=lambda r: resource_date(r) or "", reverse=True)
        return SearchResult(
            query=query, resources=kept, foreign_dropped=dropped, fetch_capped=capped, refs=refs
        )

    def _filter(
        self, found: Iterable[dict[str, Any]], patient_id: str, query: RecordQuery
    ) -> tuple[list[dict[str, Any]], int]:
        kept: list[dict[str, Any]] = []
        dropped = 0
        for resource in found:
            if resource.get("resourceType") != query.resource_type:
                continue
            if not belongs_to_patient(resource, patient_id, self.client.base_url):
                dropped += 1
                continue
            if _code_matches(resource, query) and _in_dates(resource, query):
                kept.append(resource)
        return kept, dropped

    async def references(self, patient_id: str, resources: Sequence[Mapping[str, Any]]) -> References:
        """Labels for what the lines point to: reasons (the patient's Conditions), requesters, performers,
        and the visit dates of Conditions.

        Only references to this server are followed. A patient-owned type (Condition, Encounter,
        RelatedPerson, ...) is fetched with a search scoped to the patient, so another patient's resource
        is never read; a Patient other than the one in context is not fetched at all."""
        base = self.client.base_url
        wanted: dict[str, None] = {}
        encounters: dict[str, None] = {}
        for r in resources:
            for ref in r.get("reasonReference") or []:
                _want(wanted, ref, base)
            for field_name in ("requester", "medicationReference", "recorder", "asserter"):
                _want(wanted, r.get(field_name), base)
            for author in r.get("author") or []:
                _want(wanted, author, base)
            for participant in r.get("participant") or []:
                _want(wanted, (participant or {}).get("individual"), base)
            needs_encounter = r.get("resourceType") == "Condition" and not r.get("recordedDate")
            if needs_encounter or (r.get("resourceType") == "MedicationRequest" and not r.get("requester")):
                encounter_key = reference_key(r.get("encounter"), base)
                if encounter_key:
                    encounters[encounter_key] = None
        cache: dict[str, dict[str, Any] | None] = {}
        await self._read_all(patient_id, [*encounters, *wanted], cache)
        performers: dict[str, str] = {}
        dates: dict[str, str] = {}
        for key in encounters:
            encounter = cache.get(key)
            if encounter is None:
                continue
            start = (encounter.get("period") or {}).get("start")
            if isinstance(start, str) and start:
                dates[key] = start[:10]
            performer = _primary_performer(encounter, base)
            if performer:
                performers[key] = performer
                wanted[performer] = None
        await self._read_all(patient_id, list(wanted), cache)
        names: dict[str, str] = {}
        own: set[str] = set()
        label: str | None
        for key in wanted:
            resource = cache.get(key)
            if resource is None:
                continue
            own.add(key)
            if resource.get("resourceType") in ("Condition", "Observation", "Procedure", "Encounter"):
                label = concept_text(resource.get("code")) or render_resource(resource)
            elif resource.get("resourceType") == "Medication":
                label = concept_text(resource.get("code"))
            else:
                label = human_name(resource) or _role_name(resource)
            if label:
                names[key] = label
        return References(
            names=names, own=frozenset(own), encounter_performers=performers, dates=dates, server_base=base
        )

    async def _read_all(
        self, patient_id: str, keys: Iterable[str], cache: dict[str, dict[str, Any] | None]
    ) -> None:
        """Fetch referenced resources into `cache` (None for what may not or cannot be shown).

        Shared types (Practitioner, Organization, Medication, ...): one `_id` search per type and chunk,
        reads as fallback. Patient-owned types: an `_id` search scoped to the patient by the compartment's
        parameter, each result checked to be the patient's. Patients: only the one in context."""
        todo = [k for k in dict.fromkeys(keys) if k not in cache][: max(0, _MAX_REFERENCES - len(cache))]
        by_type: dict[str, list[str]] = {}
        for key in todo:
            rtype, _, rid = key.partition("/")
            if rtype == "Patient":
                cache[key] = await self.patient(patient_id) if rid == patient_id else None
                continue
            by_type.setdefault(rtype, []).append(rid)
        gate = asyncio.Semaphore(_READ_CONCURRENCY)

        async def read(rtype: str, rid: str) -> None:
            async with gate:
                try:
                    cache[f"{rtype}/{rid}"] = await self.client.read(rtype, rid)
                except (FhirNotFoundError, ValueError):
                    cache[f"{rtype}/{rid}"] = None

        async def chunk(rtype: str, ids: list[str]) -> None:
            shared = rtype in OUTSIDE_COMPARTMENTS
            params = PATIENT_COMPARTMENT.get(rtype)
            for rid in ids:
                cache.setdefault(f"{rtype}/{rid}", None)
            if not shared and not params:
                return
            search = self.client.search(rtype).where(_id=",".join(ids))
            if params:
                search = search.where({next(iter(params)): f"Patient/{patient_id}"})
            try:
                async with gate:
                    found = await search.all(limit=len(ids))
            except (FhirBadRequestError, FhirNotFoundError, ValueError):
                if shared:
                    await asyncio.gather(*(read(rtype, rid) for rid in ids))
                return
            for resource in found:
                if resource.get("resourceType") != rtype or resource.get("id") not in ids:
                    continue
                if shared or belongs_to_patient(resource, patient_id, self.client.base_url):
                    cache[f"{rtype}/{resource['id']}"] = resource

        await asyncio.gather(
            *(
                chunk(rtype, ids[i : i + _ID_CHUNK])
                for rtype, ids in by_type.items()
                for i in range(0, len(ids), _ID_CHUNK)
            )
        )

    async def search_text(self, patient_id: str, query: RecordQuery) -> str:
        """The search answer as cited lines under the token budget, or a not-found sentence."""
        result = await self.search(patient_id, query)
        criteria = query.describe()
        what = query.resource_type
        if not result.resources:
            return NOT_FOUND.format(what=what, criteria=f" with {criteria}" if criteria else "")
        shown = result.resources[: query.limit]
        refs = result.refs or await self.references(patient_id, shown)
        total = len(result.resources)
        header = f"{total} {what} found" + (f" with {criteria}" if criteria else "")
        header += f", newest first (limit {query.limit}):" if total > query.limit else ", newest first:"
        if result.fetch_capped:
            header += f" [only the first {self.max_fetch} fetched; {_HINT}]"
        body = render_lines(
            shown, self.token_budget - estimate_tokens(header) - 1, refs=refs, total=total, hint=_HINT
        )
        return f"{header}\n{body}"

    async def manifest_text(self, patient_id: str) -> str:
        """The record manifest (types, counts, date spans, frequent codes) as compact text."""
        patient = await self.patient(patient_id)
        try:
            resources = await self.client.everything(patient_id, limit=self.max_fetch * 10)
        except (FhirBadRequestError, FhirNotFoundError) as exc:
            log.info("$everything unavailable (%s); using one search per type", exc)
            resources = []
            for rtype, params in _PARAMS.items():
                search = self.client.search(rtype).where({params.patient: patient_id})
                resources += await search.all(limit=self.max_fetch)
        if not any(r.get("resourceType") == "Patient" and r.get("id") == patient_id for r in resources):
            resources.append(patient)
        manifest = build_manifest(resources, patient_id, types=SEARCHABLE_TYPES)
        return render_manifest(manifest, self.manifest_budget)


def _want(wanted: dict[str, None], ref: Any, server_base: str) -> None:
    """Note a reference to resolve: one on this server, and (for a shared type) with no display of its own.

    References to patient-owned types are always resolved: only a verified one may be shown."""
    key = reference_key(ref, server_base) if isinstance(ref, Mapping) else None
    if key and not (ref.get("display") and key.partition("/")[0] in OUTSIDE_COMPARTMENTS):
        wanted[key] = None


def _primary_performer(encounter: Mapping[str, Any], server_base: str) -> str | None:
    participants = [p for p in encounter.get("participant") or [] if isinstance(p, Mapping)]
    primary = [
        p
        for p in participants
        if any(c.get("code") == "PPRF" for t in p.get("type") or [] for c in (t or {}).get("coding") or [])
    ]
    for participant in primary or participants:
        key = reference_key(participant.get("individual"), server_base)
        if key and key.partition("/")[0] in ("Practitioner", "PractitionerRole"):
            return key
    return None


def _role_name(resource: Mapping[str, Any]) -> str | None:
    practitioner = resource.get("practitioner")
    if isinstance(practitioner, Mapping) and practitioner.get("display"):
        return str(practitioner["display"])
    return None


def _validation_message(error: ValidationError) -> str:
    problems = []
    valid_types = f"use one of {', '.join(SEARCHABLE_TYPES)}"
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ())) or "arguments"
        if item.get("type") == "missing":
            problems.append(f"{where} is required" + (f"; {valid_types}" if where == "resource_type" else ""))
        elif where == "resource_type":
            problems.append(f"resource_type {item.get('input')!r} is not searchable; {valid_types}")
        else:
            problems.append(f"{where}: {item.get('msg')}")
    return BAD_ARGUMENTS.format(detail="; ".join(problems))


def _tool_error(error: ToolException) -> str:
    return str(error)


def make_fhir_tools(
    client: FhirClient,
    *,
    token_budget: int = 1200,
    manifest_budget: int = 1500,
    max_fetch: int = 2000,
) -> list[BaseTool]:
    """The patient-scoped FHIR tools `record_manifest` and `search_record`, sharing one reader."""
    reader = RecordReader(
        client, token_budget=token_budget, manifest_budget=manifest_budget, max_fetch=max_fetch
    )

    async def record_manifest(patient_id: Annotated[str, InjectedState("patient_id")]) -> str:
        """The record manifest; see `_MANIFEST_DESCRIPTION`."""
        try:
            return await reader.manifest_text(patient_id)
        except FhirError as exc:
            raise ToolFailed(TOOL_FAILED.format(detail=exc)) from exc

    async def search_record(
        resource_type: ResourceType,
        patient_id: Annotated[str, InjectedState("patient_id")],
        code: str | None = None,
        text: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        limit: int = _DEFAULT_LIMIT,
    ) -> str:
        """Search the patient's record for one resource type; returns cited lines, newest first.

        Args:
            resource_type: FHIR resource type to search, e.g. Condition, Observation, MedicationRequest.
            code: a code from the manifest ("4548-4"), "system|code", or words of a code's display name.
            text: words that must all appear in a result line (displays, reasons, names; any case).
            date_from: earliest date, YYYY-MM-DD (YYYY-MM and YYYY also work).
            date_to: latest date, YYYY-MM-DD (YYYY-MM and YYYY also work).
            limit: most resources to list (1-100).
        """
        query = RecordQuery.parse(resource_type, code, text, date_from, date_to, limit)
        try:
            return await reader.search_text(patient_id, query)
        except FhirError as exc:
            raise ToolFailed(TOOL_FAILED.format(detail=exc)) from exc

    manifest_tool = StructuredTool.from_function(
        coroutine=record_manifest,
        name="record_manifest",
        description=_MANIFEST_DESCRIPTION,
        handle_tool_error=_tool_error,
        handle_validation_error=_validation_message,
    )
    search_tool = StructuredTool.from_function(
        coroutine=search_record,
        name="search_record",
        parse_docstring=True,
        handle_tool_error=_tool_error,
        handle_validation_error=_validation_message,
    )
    return [manifest_tool, search_tool]
