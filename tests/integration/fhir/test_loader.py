"""Loading PySynthea bundles and Bulk Data NDJSON into the real embedded server."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from clinicflow.fhir import FhirClient
from clinicflow.fhir.demo import free_port
from clinicflow.fhir.loader import load_directory
from clinicflow.fhir.server import EmbeddedFhirServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedFhirServer]:
    """An embedded server of its own (these tests write to it), empty at the start of the module."""
    with EmbeddedFhirServer(tmp_path_factory.mktemp("loader-server"), port=free_port()) as server:
        yield server


@pytest.fixture
async def client(empty_server: EmbeddedFhirServer) -> AsyncIterator[FhirClient]:
    async with FhirClient(empty_server.base_url, timeout=120) as c:
        yield c


def _resources(bundle_path: Path) -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads(bundle_path.read_text())["entry"]]


def _smallest_bundle(cohort_dir: Path) -> Path:
    return min(sorted(cohort_dir.glob("*.json")), key=lambda p: p.stat().st_size)


async def _total(client: FhirClient, rtype: str, **params: str) -> int:
    page = await client.search(rtype).where(**params).count(0).page()
    return int(page["total"])


async def test_cohort_loads_with_source_ids_and_resolved_references(
    client: FhirClient, empty_server: EmbeddedFhirServer, cohort_dir: Path
) -> None:
    expected: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    for path in sorted(cohort_dir.glob("*.json")):
        for r in _resources(path):
            if (r["resourceType"], r["id"]) not in seen:
                seen.add((r["resourceType"], r["id"]))
                expected[r["resourceType"]] += 1
    report = await load_directory(client, cohort_dir, progress=False, after_load=empty_server.analyze)
    assert report.ok, report.summary()
    assert report.loaded == expected
    for rtype in ("Patient", "Encounter", "Observation", "Practitioner"):
        assert await _total(client, rtype) == expected[rtype]

    resources = _resources(_smallest_bundle(cohort_dir))
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    obs = next(r for r in resources if r["resourceType"] == "Observation" and "encounter" in r)
    stored = await client.read("Observation", obs["id"])
    assert stored["subject"]["reference"] == f"Patient/{patient['id']}"
    encounter_type, encounter_id = stored["encounter"]["reference"].split("/")
    assert encounter_type == "Encounter"
    encounter = await client.read("Encounter", encounter_id)
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
    mine = sum(1 for r in resources if r["resourceType"] == "Observation")
    assert await _total(client, "Observation", subject=f"Patient/{patient['id']}") == mine

    again = await load_directory(client, _smallest_bundle(cohort_dir), progress=False)
    assert again.ok and again.loaded["Patient"] == 1
    assert await _total(client, "Patient") == expected["Patient"]


def _to_export(resource: dict[str, Any], urls: dict[str, str], source_base: str) -> dict[str, Any]:
    """A resource as a Bulk Data export writes it: references as (absolute) Type/id, not urn:uuid."""
    text = json.dumps(resource)
    for urn, ref in urls.items():
        text = text.replace(f'"{urn}"', f'"{source_base}{ref}"')
    out: dict[str, Any] = json.loads(text)
    return out


async def test_ndjson_files_per_type_resolve_references_between_files(
    client: FhirClient, cohort_dir: Path, tmp_path: Path
) -> None:
    bundle = json.loads(_smallest_bundle(cohort_dir).read_text())
    urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        # one file with absolute references to the source server, the rest relative, as exports vary
        base = "https://source.example/fhir/" if resource["resourceType"] == "Condition" else ""
        by_type.setdefault(resource["resourceType"], []).append(_to_export(resource, urls, base))
    export = tmp_path / "export"
    export.mkdir()
    for rtype, items in by_type.items():
        text = "".join(json.dumps(r) + "\n" for r in items)
        if rtype in ("Condition", "Observation"):  # exports are often gzipped
            (export / f"{rtype}.ndjson.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (export / f"{rtype}.ndjson").write_text(text)

    report = await load_directory(client, export, progress=False)
    assert report.ok, report.summary()
    assert report.files == len(by_type)
    assert report.loaded == {rtype: len(items) for rtype, items in by_type.items()}
    condition = by_type["Condition"][0]
    stored = await client.read("Condition", condition["id"])
    assert stored["subject"]["reference"] == condition["subject"]["reference"].removeprefix(
        "https://source.example/fhir/"
    )
    assert stored["subject"]["reference"].startswith("Patient/")


async def test_malformed_inputs_are_reported_and_the_rest_loads(
    client: FhirClient, cohort_dir: Path, tmp_path: Path
) -> None:
    resources = _resources(_smallest_bundle(cohort_dir))
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    subject = {"reference": f"urn:uuid:{patient['id']}"}
    observations = [
        {"resourceType": "Observation", "status": "final", "code": r["code"], "subject": subject}
        for r in resources
        if r["resourceType"] == "Observation"
    ][:3]
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "truncated.json").write_text(json.dumps({"resourceType": "Bundle", "type": "batch"})[:-5])
    lines = [
        json.dumps({"resourceType": "Patient", "id": "ndjson-ok", "gender": "female"}),
        '{"resourceType": "Patient", "id": "cut-off", ',
        json.dumps({"resourceType": "Patient", "id": "bad-gender", "gender": ["female"]}),
        json.dumps({"resourceType": "Patient", "id": "ndjson-ok-2"}),
    ]
    (folder / "Patient.ndjson").write_text("\n".join(lines) + "\n")
    invalid = dict(observations[1])
    invalid["valueQuantity"] = {"value": "seven point nine"}
    invalid["id"] = "invalid-obs"
    entries = [
        {"fullUrl": f"urn:uuid:{patient['id']}", "resource": patient},
        {"resource": {**observations[0], "id": "valid-obs-1"}},
        {"resource": invalid},
        {"resource": {**observations[2], "id": "valid-obs-2"}},
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    (folder / "bundle.json").write_text(json.dumps(bundle))
    (folder / "Encounter.ndjson.gz").write_text("named .gz but not gzipped\n")

    report = await load_directory(client, folder, progress=False)
    where = {(i.file.name, i.location) for i in report.errors}
    assert where == {("truncated.json", None), ("Patient.ndjson", "line 2"), ("Patient.ndjson", "line 3"),
                     ("bundle.json", "entry 2"), ("Encounter.ndjson.gz", "line 1")}  # fmt: skip
    assert report.loaded == {"Patient": 3, "Observation": 2}
    for rtype, rid in (("Patient", "ndjson-ok"), ("Patient", "ndjson-ok-2"), ("Observation", "valid-obs-2")):
        assert (await client.read(rtype, rid))["id"] == rid
    lines_out = report.summary().splitlines()
    assert any("bundle.json: entry 2: Invalid FHIR R4 Observation" in line for line in lines_out)
    assert any("Patient.ndjson: line 2: not valid JSON" in line for line in lines_out)
    assert any("Encounter.ndjson.gz: line 1: unreadable: Not a gzipped file" in line for line in lines_out)
