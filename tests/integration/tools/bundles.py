"""Reads the demo cohort's bundles directly (no FHIR server, no tools), to compute expected answers."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_URN = re.compile(r'"(urn:uuid:[0-9A-Za-z.\-]+)"')


@dataclass
class PatientBundle:
    """One patient's resources as the server stores them: source ids kept, references as `Type/id`."""

    file: Path
    patient: dict[str, Any]
    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_type: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    @property
    def patient_id(self) -> str:
        return str(self.patient["id"])

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        """This patient's resources of one type, in bundle order."""
        return list(self.by_type.get(resource_type, []))

    def get(self, reference: str | None) -> dict[str, Any] | None:
        """The resource a `Type/id` reference points to, if it is in this bundle."""
        return self.by_key.get(reference or "")


def load_bundle(path: Path) -> PatientBundle:
    """Parse one transaction bundle, rewriting `urn:uuid:` references to `Type/id` as the loader does."""
    bundle = json.loads(path.read_text())
    entries = [e for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict)]
    urls = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in entries
        if e.get("fullUrl")
    }
    text = _URN.sub(
        lambda m: json.dumps(urls.get(m.group(1), m.group(1))), json.dumps([e["resource"] for e in entries])
    )
    resources: list[dict[str, Any]] = json.loads(text)
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    out = PatientBundle(file=path, patient=patient)
    for resource in resources:
        out.by_key[f"{resource['resourceType']}/{resource['id']}"] = resource
        out.by_type[resource["resourceType"]].append(resource)
    return out


def load_cohort(cohort_dir: Path) -> list[PatientBundle]:
    """Every patient bundle in the cohort folder, sorted by file name."""
    return [load_bundle(p) for p in sorted(cohort_dir.glob("*.json"))]


def first_coding(concept: Any) -> dict[str, Any]:
    """The first coding of a CodeableConcept (or of the first of a list of them)."""
    if isinstance(concept, list):
        concept = concept[0] if concept else {}
    codings = (concept or {}).get("coding") or [{}]
    return dict(codings[0])


def day(value: str | None) -> str:
    """YYYY-MM-DD of a FHIR date or dateTime."""
    return (value or "")[:10]
