"""Labels for what a patient's resources point to (reasons, requesters, performers, visit dates), read
without ever reading another patient's resource."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from clinicflow.fhir import FhirBadRequestError, FhirClient, FhirNotFoundError
from clinicflow.fhir.references import (
    OUTSIDE_COMPARTMENTS,
    PATIENT_COMPARTMENT,
    belongs_to_patient,
    reference_key,
)

from ..render import References, concept_text, human_name, render_resource

__all__ = ["resolve_references"]

PatientReader = Callable[[str], Awaitable[dict[str, Any]]]

_MAX_REFERENCES = 400
_ID_CHUNK = 50
_READ_CONCURRENCY = 4


async def resolve_references(
    client: FhirClient, patient: PatientReader, patient_id: str, resources: Sequence[Mapping[str, Any]]
) -> References:
    """Labels for what the lines point to: reasons (the patient's Conditions), requesters, performers,
    and the visit dates of Conditions.

    Only references to this server are followed. A patient-owned type (Condition, Encounter,
    RelatedPerson, ...) is fetched with a search scoped to the patient, so another patient's resource
    is never read; a Patient other than the one in context is not fetched at all (`patient` reads the
    one in context)."""
    base = client.base_url
    wanted, encounters = _pointed_to(resources, base)
    reads = _Reads(client, patient, patient_id)
    await reads.fetch([*encounters, *wanted])
    performers: dict[str, str] = {}
    dates: dict[str, str] = {}
    for key in encounters:
        encounter = reads.cache.get(key)
        if encounter is None:
            continue
        start = (encounter.get("period") or {}).get("start")
        if isinstance(start, str) and start:
            dates[key] = start[:10]
        performer = _primary_performer(encounter, base)
        if performer:
            performers[key] = performer
            wanted[performer] = None
    await reads.fetch(list(wanted))
    names = {key: label for key in wanted if (label := _label(reads.cache.get(key)))}
    own = frozenset(key for key in wanted if reads.cache.get(key) is not None)
    return References(names=names, own=own, encounter_performers=performers, dates=dates, server_base=base)


def _pointed_to(resources: Sequence[Mapping[str, Any]], base: str) -> tuple[dict[str, None], dict[str, None]]:
    """The references to resolve, and the encounters whose dates and performers stand in for a missing
    recorded date or requester."""
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
    return wanted, encounters


def _label(resource: Mapping[str, Any] | None) -> str | None:
    if resource is None:
        return None
    if resource.get("resourceType") in ("Condition", "Observation", "Procedure", "Encounter"):
        return concept_text(resource.get("code")) or render_resource(resource)
    if resource.get("resourceType") == "Medication":
        return concept_text(resource.get("code"))
    return human_name(resource) or _role_name(resource)


class _Reads:
    """Referenced resources fetched into `cache` (None for what may not or cannot be shown).

    Shared types (Practitioner, Organization, Medication, ...): one `_id` search per type and chunk,
    reads as fallback. Patient-owned types: an `_id` search scoped to the patient by the compartment's
    parameter, each result checked to be the patient's. Patients: only the one in context."""

    def __init__(self, client: FhirClient, patient: PatientReader, patient_id: str) -> None:
        self.client = client
        self.patient = patient
        self.patient_id = patient_id
        self.cache: dict[str, dict[str, Any] | None] = {}
        self.gate = asyncio.Semaphore(_READ_CONCURRENCY)

    async def fetch(self, keys: Iterable[str]) -> None:
        cache = self.cache
        todo = [k for k in dict.fromkeys(keys) if k not in cache][: max(0, _MAX_REFERENCES - len(cache))]
        by_type: dict[str, list[str]] = {}
        for key in todo:
            rtype, _, rid = key.partition("/")
            if rtype == "Patient":
                cache[key] = await self.patient(self.patient_id) if rid == self.patient_id else None
                continue
            by_type.setdefault(rtype, []).append(rid)
        await asyncio.gather(
            *(
                self._chunk(rtype, ids[i : i + _ID_CHUNK])
                for rtype, ids in by_type.items()
                for i in range(0, len(ids), _ID_CHUNK)
            )
        )

    async def _read(self, rtype: str, rid: str) -> None:
        async with self.gate:
            try:
                self.cache[f"{rtype}/{rid}"] = await self.client.read(rtype, rid)
            except (FhirNotFoundError, ValueError):
                self.cache[f"{rtype}/{rid}"] = None

    async def _chunk(self, rtype: str, ids: list[str]) -> None:
        shared = rtype in OUTSIDE_COMPARTMENTS
        params = PATIENT_COMPARTMENT.get(rtype)
        for rid in ids:
            self.cache.setdefault(f"{rtype}/{rid}", None)
        if not shared and not params:
            return
        search = self.client.search(rtype).where(_id=",".join(ids))
        if params:
            search = search.where({next(iter(params)): f"Patient/{self.patient_id}"})
        try:
            async with self.gate:
                found = await search.all(limit=len(ids))
        except (FhirBadRequestError, FhirNotFoundError, ValueError):
            if shared:
                await asyncio.gather(*(self._read(rtype, rid) for rid in ids))
            return
        for resource in found:
            if resource.get("resourceType") != rtype or resource.get("id") not in ids:
                continue
            if shared or belongs_to_patient(resource, self.patient_id, self.client.base_url):
                self.cache[f"{rtype}/{resource['id']}"] = resource


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
