"""Patient records for question generation, read from a folder of FHIR files or from a FHIR server.

Ids follow the loader's rules (`resource.id`, else the `fullUrl` tail), so the ids questions cite are the
ids a server loaded by `clinicflow.fhir.loader` holds. `urn:uuid:`, conditional (`Type?identifier=...`) and
absolute references are rewritten to `Type/id`. A resource the loader would skip (invalid R4, a reference
that resolves nowhere) is skipped here too, so no question rests on a resource the server lacks.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from clinicflow.fhir import FhirClient, FhirError, FhirValidationError, parse_resource
from clinicflow.fhir.loader import fhir_files, fhir_records

__all__ = [
    "PATIENT_FIELDS",
    "VALIDATED_TYPES",
    "PatientRecord",
    "RecordSet",
    "RecordsError",
    "read_records",
    "records_from_resources",
    "records_from_server",
]

PATIENT_FIELDS = ("subject", "patient")
VALIDATED_TYPES = frozenset(
    {
        "Patient",
        "Condition",
        "MedicationRequest",
        "Immunization",
        "Observation",
        "Encounter",
        "Practitioner",
        "PractitionerRole",
        "Medication",
        "Procedure",
        "AllergyIntolerance",
        "MedicationAdministration",
        "DiagnosticReport",
        "CarePlan",
        "ImagingStudy",
    }
)
"""Types parsed against the R4 models before use (the loader parses all); others need only a known type."""

_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_RELATIVE_RE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
_ABSOLUTE_RE = re.compile(r"^https?://.+/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


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
        """The resource a `Type/id` reference (or Reference object) points to, if the source holds it."""
        if isinstance(reference, Mapping):
            reference = reference.get("reference")
        if not isinstance(reference, str):
            return None
        return self.shared.get(reference)


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


@dataclass
class _Entry:
    file: Path
    location: str | None
    resource: dict[str, Any]
    full_url: str | None


def _entries(file: Path, skipped: list[str]) -> Iterator[_Entry]:
    """The file's resources as the loader reads them; what it cannot read is named in `skipped`."""
    for location, resource, full_url, issue in fhir_records(file):
        if issue is not None:
            skipped.append(str(issue))
        elif isinstance(resource, dict):
            yield _Entry(file, location, resource, full_url)
        else:
            skipped.append(f"{file}: {location or 'resource'}: not a FHIR resource (expected a JSON object)")


def _source_id(entry: _Entry) -> str:
    rid = entry.resource.get("id")
    if isinstance(rid, str) and rid:
        return rid
    if entry.full_url:
        tail = entry.full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        if _ID_RE.match(tail):
            return tail
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{entry.file.name}#{entry.location}"))


def _walk_references(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for value in node.values():
            yield from _walk_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_references(value)


@dataclass
class _Index:
    keys: set[str] = field(default_factory=set)
    urls: dict[str, str] = field(default_factory=dict)
    file_urls: dict[Path, dict[str, str]] = field(default_factory=dict)
    identifiers: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def conditional(self, rtype: str, query: str) -> str | None:
        params = parse_qsl(query)
        if len(params) != 1 or params[0][0] != "identifier":
            return None
        system, sep, value = params[0][1].rpartition("|")
        rid = self.identifiers.get((rtype, system if sep else "", value))
        if rid is None and not sep:
            rid = next((i for (t, _, v), i in self.identifiers.items() if t == rtype and v == value), None)
        return f"{rtype}/{rid}" if rid else None

    def rewrite(self, file: Path, resource: dict[str, Any]) -> bool:
        """Rewrite references in place to `Type/id`; False when one cannot resolve (the loader skips it)."""
        local = self.file_urls.get(file, {})
        for ref in _walk_references(resource):
            value: str = ref["reference"]
            if value.startswith("#"):
                continue
            target = local.get(value) or self.urls.get(value)
            if target is None and "?" in value and not value.startswith(("http://", "https://", "urn:")):
                rtype, _, query = value.partition("?")
                target = self.conditional(rtype, query)
                if target is None:
                    return False
            if target is None and value.startswith("urn:"):
                return False
            if target is None:
                match = _ABSOLUTE_RE.match(value)
                if match and f"{match.group(1)}/{match.group(2)}" in self.keys:
                    target = f"{match.group(1)}/{match.group(2)}"
            if target is not None:
                ref["reference"] = target
        return True


@cache
def _known_type(resource_type: str) -> bool:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return False
    return True


def _valid(resource: Mapping[str, Any]) -> bool:
    """Whether the loader would store it: types used here are parsed fully, others only checked as known."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype or not _known_type(rtype):
        return False
    if rtype not in VALIDATED_TYPES:
        return True
    try:
        parse_resource(resource)
    except FhirValidationError:
        return False
    return True


def _patient_of(resource: Mapping[str, Any]) -> str | None:
    """The patient id a resource belongs to, when all its patient references agree."""
    keys = set()
    for name in PATIENT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str):
            match = _RELATIVE_RE.match(ref["reference"])
            keys.add(match.group(2) if match and match.group(1) == "Patient" else None)
    if len(keys) != 1:
        return None
    return next(iter(keys))


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
        owner = _patient_of(item)
        if owner is not None:
            owned.setdefault(owner, []).append(item)
    records = [
        PatientRecord(pid, patients[pid], owned.get(pid, []), shared, source) for pid in sorted(patients)
    ]
    return RecordSet(records, list(skipped))


def read_records(path: Path | str) -> RecordSet:
    """Read every *.json (Bundle or resource) and *.ndjson file (or .gz) under `path` into patient records."""
    root = Path(path)
    if not root.exists():
        raise RecordsError(f"No such file or folder: {root}")
    skipped: list[str] = []
    entries: list[_Entry] = []
    index = _Index()
    seen: set[str] = set()
    for file in fhir_files(root):
        local: dict[str, str] = {}
        for entry in _entries(file, skipped):
            if not _valid(entry.resource):
                skipped.append(f"{entry.file}: {entry.location or 'resource'}: not a valid FHIR R4 resource")
                continue
            rid = _source_id(entry)
            if not _ID_RE.match(rid):
                continue
            key = f"{entry.resource['resourceType']}/{rid}"
            if entry.full_url:
                local[entry.full_url] = key
                index.urls.setdefault(entry.full_url, key)
            if key in seen:
                continue
            seen.add(key)
            index.keys.add(key)
            resource = dict(entry.resource)
            resource["id"] = rid
            entries.append(_Entry(entry.file, entry.location, resource, entry.full_url))
            for ident in resource.get("identifier") or []:
                if isinstance(ident, dict) and ident.get("value"):
                    triple = (resource["resourceType"], ident.get("system") or "", ident["value"])
                    index.identifiers.setdefault(triple, rid)
        index.file_urls[file] = local
    kept: list[dict[str, Any]] = []
    for entry in entries:
        resource = json.loads(json.dumps(entry.resource))
        if index.rewrite(entry.file, resource):
            kept.append(resource)
        else:
            skipped.append(f"{entry.file}: {entry.location}: a reference resolves to nothing in the folder")
    records = records_from_resources(kept, source=str(root), skipped=skipped)
    if not records.records:
        raise RecordsError(f"No Patient resources found under {root} ({len(kept)} resources read)")
    return records


_SHARED_TYPES = ("Practitioner", "PractitionerRole", "Medication", "Encounter", "Condition", "Organization")


async def records_from_server(
    client: FhirClient,
    *,
    patient_ids: Sequence[str] | None = None,
    max_patients: int | None = None,
    limit: int = 50_000,
) -> RecordSet:
    """Read patients' records with `Patient/$everything`, plus the practitioners and medications they cite."""
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
        for ref in _walk_references(resource):
            match = _RELATIVE_RE.match(ref["reference"])
            if match and match.group(1) in _SHARED_TYPES and ref["reference"] not in have:
                wanted[ref["reference"]] = None
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
