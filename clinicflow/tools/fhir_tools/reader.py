"""`RecordReader`: one patient's record read through a shared `FhirClient`, answered as text."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from clinicflow.fhir import FhirBadRequestError, FhirClient, FhirNotFoundError
from clinicflow.fhir.references import belongs_to_patient

from ..errors import ToolFailed
from ..manifest import build_manifest, concept_names, render_manifest, resource_codings
from ..render import References, estimate_tokens, render_lines, render_resource, resource_date
from .linked import resolve_references
from .matching import matches_code_and_dates, matches_text
from .query import SEARCH_PARAMS, SEARCHABLE_TYPES, RecordQuery

__all__ = ["NOT_FOUND", "NO_PATIENT", "PATIENT_NOT_FOUND", "REDIRECTED", "RecordReader", "SearchResult"]

log = logging.getLogger(__name__)

PATIENT_NOT_FOUND = "Tool failed: patient {patient_id!r} not found on the FHIR server"
NO_PATIENT = "Tool failed: no patient is in context"
NOT_FOUND = "No {what} found in the record{criteria} (not found in the record)."
REDIRECTED = "No {asked} found with {criteria}; that concept is recorded as {found}:"
_KNOWN_PATIENTS_CAP = 1024
_HINT = "narrow by code or date"


@dataclass(frozen=True)
class SearchResult:
    """Matching resources of one patient, newest first, and how many the server sent that were dropped."""

    query: RecordQuery
    resources: list[dict[str, Any]]
    foreign_dropped: int = 0
    fetch_capped: bool = False
    refs: References | None = None
    asked_type: str | None = None
    """The type the search asked for, when it held no match and `query` names the one type that does."""


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
        params = SEARCH_PARAMS[query.resource_type]
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

    async def search(self, patient_id: str, query: RecordQuery, *, redirect: bool = True) -> SearchResult:
        """Resources of the patient matching the query, newest first (all of them, not cut to the limit).

        With `redirect`, a search by code that matches nothing of its type is run on the one other type
        whose concepts are exactly that code or display (see `_type_holding_concept`)."""
        patient = await self.patient(patient_id)
        if query.resource_type == "Patient":
            return SearchResult(query=query, resources=[patient])
        found, capped = await self._fetch(patient_id, query, use_code=True)
        kept, dropped = self._filter(found, patient_id, query)
        if not kept and query.code and not query.system:
            retry = replace(query, code=None, code_text=query.code)
            found, capped = await self._fetch(patient_id, retry, use_code=False)
            kept, dropped = self._filter(found, patient_id, retry)
        if not kept and redirect:
            holder = await self._type_holding_concept(patient_id, query)
            if holder is not None:
                moved = await self.search(patient_id, replace(query, resource_type=holder), redirect=False)
                if moved.resources:
                    return replace(moved, asked_type=query.resource_type)
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
            kept = [r for r in kept if matches_text(r, query.text, render_resource(r, refs))]
        kept.sort(key=lambda r: resource_date(r) or "", reverse=True)
        return SearchResult(
            query=query, resources=kept, foreign_dropped=dropped, fetch_capped=capped, refs=refs
        )

    async def _type_holding_concept(self, patient_id: str, query: RecordQuery) -> str | None:
        """The one other searchable type of the record holding a concept whose code or whole display is the
        query's bare code (a planner that copied a concept's name but chose the wrong type); None when no
        type, or several, do. Only exact names count (`concept_names`), so a partial phrase never lands
        on an unrelated type. The harness's `ToolView` replays this rule."""
        wanted = " ".join((query.code or query.code_text or "").casefold().split())
        if not wanted or query.system:
            return None
        holders = set()
        for resource in await self._record_resources(patient_id):
            rtype = resource.get("resourceType")
            if rtype == query.resource_type or rtype not in SEARCH_PARAMS or not SEARCH_PARAMS[rtype].code:
                continue
            if not belongs_to_patient(resource, patient_id, self.client.base_url):
                continue
            if any(wanted in concept_names(coding) for coding in resource_codings(resource)):
                holders.add(str(rtype))
        return holders.pop() if len(holders) == 1 else None

    async def _record_resources(self, patient_id: str) -> list[dict[str, Any]]:
        """Everything the server holds for the patient ($everything, else one search per type)."""
        try:
            return await self.client.everything(patient_id, limit=self.max_fetch * 10)
        except (FhirBadRequestError, FhirNotFoundError) as exc:
            log.info("$everything unavailable (%s); using one search per type", exc)
            resources = []
            for rtype, params in SEARCH_PARAMS.items():
                search = self.client.search(rtype).where({params.patient: patient_id})
                resources += await search.all(limit=self.max_fetch)
            return resources

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
            if matches_code_and_dates(resource, query):
                kept.append(resource)
        return kept, dropped

    async def references(self, patient_id: str, resources: Sequence[Mapping[str, Any]]) -> References:
        """Labels for what the lines point to: reasons (the patient's Conditions), requesters, performers,
        and the visit dates of Conditions (see `resolve_references`)."""
        return await resolve_references(self.client, self.patient, patient_id, resources)

    async def search_text(self, patient_id: str, query: RecordQuery) -> str:
        """The search answer as cited lines under the token budget, or a not-found sentence."""
        result = await self.search(patient_id, query)
        criteria = query.describe()
        what = result.query.resource_type
        if not result.resources:
            return NOT_FOUND.format(what=what, criteria=f" with {criteria}" if criteria else "")
        shown = result.resources[: query.limit]
        refs = result.refs or await self.references(patient_id, shown)
        total = len(result.resources)
        header = f"{total} {what} found" + (f" with {criteria}" if criteria else "")
        header += f", newest first (limit {query.limit}):" if total > query.limit else ", newest first:"
        if result.fetch_capped:
            header += f" [only the first {self.max_fetch} fetched; {_HINT}]"
        if result.asked_type:
            header = REDIRECTED.format(asked=result.asked_type, criteria=criteria, found=what) + "\n" + header
        body = render_lines(
            shown, self.token_budget - estimate_tokens(header) - 1, refs=refs, total=total, hint=_HINT
        )
        return f"{header}\n{body}"

    async def manifest_text(self, patient_id: str) -> str:
        """The record manifest (types, counts, date spans, frequent codes) as compact text."""
        patient = await self.patient(patient_id)
        resources = await self._record_resources(patient_id)
        if not any(r.get("resourceType") == "Patient" and r.get("id") == patient_id for r in resources):
            resources.append(patient)
        manifest = build_manifest(resources, patient_id, types=SEARCHABLE_TYPES)
        return render_manifest(manifest, self.manifest_budget)
