"""Patient records for question generation, read from a folder of FHIR files or from a FHIR server.

Ids follow the loader's rules (`resource.id`, else the `fullUrl` tail), so the ids questions cite are the
ids a server loaded by `clinicflow.fhir.loader` holds. `urn:uuid:`, conditional (`Type?identifier=...`) and
absolute references are rewritten to `Type/id`. A resource the loader would skip (invalid R4, a reference
that resolves nowhere) is skipped here too, so no question rests on a resource the server lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinicflow.fhir import FhirClient, FhirError
from clinicflow.fhir.loader import resolved_resources
from clinicflow.fhir.references import (
    OUTSIDE_COMPARTMENTS,
    belongs_to_patient,
    reference_key,
    references_in,
    sole_patient,
)

__all__ = [
    "PatientRecord",
    "RecordSet",
    "RecordsError",
    "read_records",
    "records_from_resources",
    "records_from_server",
]


class RecordsError(ValueError):
    """The source holds no usable patient record; the message says what was read."""


@dataclass
class PatientRecord:
    """One patient's resources (references rewritten to `Type/id`) and the shared resources they cite."""

    patient_id: str
    patient: dict[str, Any]
    resources: list[dict[str, Any]]
    shared: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""

    def by_type(self, resource_type: str) -> list[dict[str, Any]]:
        """The patient's resources of one type, in source order."""
        return [r for r in self.resources if r.get("resourceType") == resource_type]

    def resolve(self, reference: Any) -> dict[str, Any] | None:
        """The resource a `Type/id` reference (or Reference object) points to, if the source holds it and
        it is shared (a practitioner, a medication) or this patient's own; never another patient's."""
        key = reference_key(reference)
        resource = self.shared.get(key) if key else None
        if key is None or resource is None:
            return None
        if key.partition("/")[0] in OUTSIDE_COMPARTMENTS or belongs_to_patient(resource, self.patient_id):
            return resource
        return None


@dataclass
class RecordSet:
    """All patient records read from one source, sorted by patient id, and what was skipped on the way."""

    records: list[PatientRecord]
    skipped: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[PatientRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def head(self, n: int | None) -> RecordSet:
        """The first `n` records (all when n is None)."""
        return self if n is None else RecordSet(self.records[:n], self.skipped)


def records_from_resources(
    resources: Iterable[Mapping[str, Any]], *, source: str = "", skipped: Sequence[str] = ()
) -> RecordSet:
    """Group resources whose references are already `Type/id` into one record per Patient."""
    shared: dict[str, dict[str, Any]] = {}
    patients: dict[str, dict[str, Any]] = {}
    owned: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not isinstance(rtype, str) or not isinstance(rid, str):
            continue
        key = f"{rtype}/{rid}"
        if key in shared:
            continue
        item = dict(resource)
        shared[key] = item
        if rtype == "Patient":
            patients[rid] = item
            continue
        owner = sole_patient(item)
        if owner is not None:
            owned.setdefault(owner, []).append(item)
    records = [
        PatientRecord(pid, patients[pid], owned.get(pid, []), shared, source) for pid in sorted(patients)
    ]
    return RecordSet(records, list(skipped))


def read_records(path: Path | str) -> RecordSet:
    """Read every *.json (Bundle or resource) and *.ndjson file (or .gz) under `path` into patient records.

    The resources are those `clinicflow.fhir.loader` would store, with the same ids and references.
    """
    try:
        resources, issues = resolved_resources(path)
    except FileNotFoundError as exc:
        raise RecordsError(str(exc)) from None
    records = records_from_resources(resources, source=str(path), skipped=[str(i) for i in issues])
    if not records.records:
        raise RecordsError(f"No Patient resources found under {path} ({len(resources)} resources read)")
    return records


async def records_from_server(
    client: FhirClient,
    *,
    patient_ids: Sequence[str] | None = None,
    max_patients: int | None = None,
    limit: int = 50_000,
) -> RecordSet:
    """Read patients' records with `Patient/$everything`, plus the shared resources they cite (practitioners,
    organizations, medications: types outside every patient's compartment)."""
    if patient_ids is None:
        found = await client.search("Patient").all(limit=max_patients or limit)
        patient_ids = sorted(str(p["id"]) for p in found if p.get("id"))
    patient_ids = list(patient_ids)[:max_patients] if max_patients else list(patient_ids)
    resources: list[dict[str, Any]] = []
    for pid in patient_ids:
        resources += await client.everything(pid, limit=limit)
    have = {f"{r.get('resourceType')}/{r.get('id')}" for r in resources}
    wanted: dict[str, None] = {}
    for resource in resources:
        for ref in references_in(resource):
            key = reference_key(ref, client.base_url)
            if key and key.partition("/")[0] in OUTSIDE_COMPARTMENTS and key not in have:
                wanted[key] = None
    for key in wanted:
        rtype, _, rid = key.partition("/")
        try:
            resources.append(await client.read(rtype, rid))
        except (FhirError, ValueError):
            continue
    records = records_from_resources(resources, source=str(client.base_url))
    if not records.records:
        raise RecordsError(f"No Patient resources found on {client.base_url}")
    return records
