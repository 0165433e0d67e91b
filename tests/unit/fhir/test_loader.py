"""Loader logic with a recording fake client: PUT rewriting, reference resolution, order, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clinicflow.fhir.errors import FhirBadRequestError
from clinicflow.fhir.loader import LoadReport, load_directory


class RecordingClient:
    """Stores PUT entries like a server would; rejects transactions holding a resource id in `reject`."""

    def __init__(self, reject: frozenset[str] = frozenset()) -> None:
        self.bundles: list[dict[str, Any]] = []
        self.stored: dict[str, dict[str, Any]] = {}
        self.reject = reject

    async def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        self.bundles.append(bundle)
        bad = [e["resource"]["id"] in self.reject for e in bundle["entry"]]
        if bundle["type"] == "transaction" and any(bad):
            raise FhirBadRequestError(400, "http://fake/fhir", message="rejected")
        answers = []
        for entry, rejected in zip(bundle["entry"], bad, strict=True):
            if rejected:
                outcome = {"issue": [{"severity": "error", "code": "invalid", "diagnostics": "nope"}]}
                answers.append({"response": {"status": "400 Bad Request", "outcome": outcome}})
            else:
                self.stored[entry["request"]["url"]] = entry["resource"]
                answers.append({"response": {"status": "201 Created"}})
        return {"resourceType": "Bundle", "type": f"{bundle['type']}-response", "entry": answers}


def _entry(resource: dict[str, Any], full_url: str | None = None, method: str = "POST") -> dict[str, Any]:
    request = {"method": method, "url": resource["resourceType"]}
    entry: dict[str, Any] = {"resource": resource, "request": request}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _bundle(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _obs(oid: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"text": "Hemoglobin A1c"},
        "subject": {"reference": subject},
        **extra,
    }


PATIENT = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": "42"}]}
ORG = {"resourceType": "Organization", "id": "o1", "identifier": [{"system": "urn:npi", "value": "77"}]}


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


async def test_transaction_entries_become_puts_with_urn_references_rewritten(tmp_path: Path) -> None:
    _write(
        tmp_path / "a.json",
        _bundle(_entry(_obs("o-1", "urn:uuid:p1"), "urn:uuid:o-1"), _entry(PATIENT, "urn:uuid:p1")),
    )
    client = RecordingClient()
    report = await load_directory(client, tmp_path, progress=False)
    assert report.ok and report.loaded == {"Patient": 1, "Observation": 1}
    urls = [e["request"] for b in client.bundles for e in b["entry"]]
    assert urls == [{"method": "PUT", "url": "Patient/p1"}, {"method": "PUT", "url": "Observation/o-1"}]
    assert client.stored["Observation/o-1"]["subject"]["reference"] == "Patient/p1"


async def test_conditional_and_absolute_references_resolve_across_files(tmp_path: Path) -> None:
    _write(tmp_path / "org.json", ORG)
    _write(tmp_path / "patient.json", PATIENT)
    obs = _obs(
        "o-2",
        "https://source.example/fhir/Patient/p1/_history/3",
        performer=[{"reference": "Organization?identifier=urn:npi|77"}],
        hasMember=[{"reference": "Observation/elsewhere"}, {"reference": "#contained"}],
    )
    _write(tmp_path / "obs.json", obs)
    client = RecordingClient()
    report = await load_directory(client, tmp_path, progress=False)
    assert report.ok, report.summary()
    stored = client.stored["Observation/o-2"]
    assert stored["subject"]["reference"] == "Patient/p1"
    assert stored["performer"][0]["reference"] == "Organization/o1"
    assert [m["reference"] for m in stored["hasMember"]] == ["Observation/elsewhere", "#contained"]


async def test_referenced_types_load_first_and_duplicates_merge(tmp_path: Path) -> None:
    (tmp_path / "Observation.ndjson").write_text(
        json.dumps(_obs("o-3", "Patient/p1")) + "\n\n" + json.dumps(_obs("o-4", "Patient/p1")) + "\n"
    )
    (tmp_path / "Patient.ndjson").write_text(json.dumps(PATIENT) + "\n")
    _write(tmp_path / "bundle.json", _bundle(_entry(ORG, "urn:uuid:o1"), _entry(PATIENT, "urn:uuid:p1")))
    client = RecordingClient()
    report = await load_directory(client, tmp_path, progress=False, chunk_size=1)
    order = [b["entry"][0]["request"]["url"] for b in client.bundles]
    assert order == ["Organization/o1", "Patient/p1", "Observation/o-3", "Observation/o-4"]
    assert report.duplicates == 1
    assert report.loaded == {"Organization": 1, "Patient": 1, "Observation": 2}


async def test_chunks_respect_chunk_size(tmp_path: Path) -> None:
    lines = [json.dumps(_obs(f"o-{i}", "Patient/p1")) for i in range(7)]
    (tmp_path / "Observation.ndjson").write_text("\n".join(lines))
    client = RecordingClient()
    report = await load_directory(client, tmp_path, progress=False, chunk_size=3)
    assert [len(b["entry"]) for b in client.bundles] == [3, 3, 1]
    assert report.total == 7


async def test_bad_inputs_are_reported_by_file_and_position(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"resourceType": "Bundle", "entry": [')
    (tmp_path / "lines.ndjson").write_text(
        f'{json.dumps(PATIENT)}\n{{not json\n{{"resourceType": "Patient", "birthDate": "soon"}}\n'
    )
    invalid = {"resourceType": "Observation", "id": "bad", "status": "final"}
    dangling = _obs("o-5", "urn:uuid:missing")
    _write(
        tmp_path / "bundle.json",
        _bundle(_entry(_obs("o-6", "Patient/p1")), _entry(invalid), _entry(dangling), kind="collection"),
    )
    _write(tmp_path / "doc.json", {"resourceType": "Bundle", "type": "document", "entry": []})
    report = await load_directory(RecordingClient(), tmp_path, progress=False)
    found = {(issue.file.name, issue.location) for issue in report.errors}
    assert found == {
        ("broken.json", None),
        ("lines.ndjson", "line 2"),
        ("lines.ndjson", "line 3"),
        ("bundle.json", "entry 1"),
        ("bundle.json", "entry 2"),
        ("doc.json", None),
    }
    messages = {(i.file.name, i.location): i.message for i in report.errors}
    assert "not valid JSON" in messages[("lines.ndjson", "line 2")]
    assert "birthDate" in messages[("lines.ndjson", "line 3")]
    assert "Observation.code" in messages[("bundle.json", "entry 1")]
    assert "urn:uuid:missing" in messages[("bundle.json", "entry 2")]
    assert report.loaded == {"Patient": 1, "Observation": 1}
    assert report.skipped == 6 and not report.ok
    assert "bundle.json: entry 1:" in report.summary()


async def test_rejected_transaction_is_retried_as_batch_naming_the_entry(tmp_path: Path) -> None:
    (tmp_path / "Observation.ndjson").write_text(
        "\n".join(json.dumps(_obs(oid, "Patient/p1")) for oid in ("ok-1", "no-2", "ok-3"))
    )
    client = RecordingClient(reject=frozenset({"no-2"}))
    report = await load_directory(client, tmp_path, progress=False)
    assert [b["type"] for b in client.bundles] == ["transaction", "batch"]
    assert report.loaded == {"Observation": 2}
    [issue] = report.errors
    assert (issue.file.name, issue.location) == ("Observation.ndjson", "line 2")
    assert "400" in issue.message and "nope" in issue.message


async def test_ids_come_from_full_url_when_missing(tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "gender": "male"}
    bundle = _bundle(_entry(patient, "urn:uuid:abc-123"), _entry(_obs("o", "urn:uuid:abc-123")))
    _write(tmp_path / "b.json", bundle)
    client = RecordingClient()
    await load_directory(client, tmp_path, progress=False)
    assert client.stored["Patient/abc-123"]["id"] == "abc-123"
    assert client.stored["Observation/o"]["subject"]["reference"] == "Patient/abc-123"


async def test_after_load_hook_runs_once_and_missing_path_raises(tmp_path: Path) -> None:
    _write(tmp_path / "p.json", PATIENT)
    calls: list[int] = []
    await load_directory(RecordingClient(), tmp_path, progress=False, after_load=lambda: calls.append(1))
    assert calls == [1]
    with pytest.raises(FileNotFoundError):
        await load_directory(RecordingClient(), tmp_path / "nope", progress=False)


def test_summary_lists_counts_and_problems() -> None:
    report = LoadReport(files=2, seconds=1.25)
    report.loaded.update({"Patient": 2, "Observation": 5})
    text = report.summary()
    assert text.startswith("Loaded 7 resources from 2 files in 1.2 s (0 skipped")
    assert "Observation" in text and "problems" not in text
