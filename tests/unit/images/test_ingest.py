"""Indexing folders and FHIR attachments (fake encoder, real FhirClient over httpx.MockTransport)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from clinicflow.fhir import FhirClient
from clinicflow.tools.images import (
    EmbeddedVectorStore,
    ImageIndex,
    ImageReadError,
    image_files,
    index_fhir_patient,
    index_folder,
    load_image,
)

from .fakes import FakeEncoder, solid, write_dicom

BASE = "http://fhir.test/fhir"


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def make_index(tmp_path: Path | None = None) -> ImageIndex:
    return ImageIndex(FakeEncoder(), EmbeddedVectorStore(tmp_path / "v" if tmp_path else None))


def test_folder_index_skips_unreadable_and_indexes_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    solid((200, 0, 0)).save(folder / "red.png")
    solid((0, 200, 0)).save(folder / "sub" / "green.jpg", quality=95)
    write_dicom(folder / "ct.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8), center=30, width=20)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "truncated.jpg").write_bytes(png_bytes(solid((1, 2, 3)))[:40])
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(png_bytes(solid((9, 9, 9))))
    index = make_index()
    report = index_folder(index, folder, patient_id="p1")
    assert report.indexed == 3 and index.count() == 3
    assert sorted(Path(s.name).name for s in report.skipped) == ["broken.png", "truncated.jpg"]
    assert all(s.reason for s in report.skipped)
    assert "skipped 2" in report.summary() and "broken.png" in report.summary()
    hits = index.search_image(folder / "red.png", k=3)
    assert Path(hits[0].path).name == "red.png" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].metadata["patient_id"] == "p1" and hits[0].fhir_ref is None
    assert hits[0].line().endswith(f"[image: {(folder / 'red.png').resolve()}]")
    dicom_hit = next(h for h in hits if h.path.endswith("ct.dcm"))
    assert dicom_hit.metadata["format"] == "dicom" and dicom_hit.metadata["modality"] == "CT"


def test_reindexing_a_folder_replaces_entries(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    solid((10, 20, 30)).save(folder / "a.png")
    index = make_index(tmp_path)
    index_folder(index, folder)
    index_folder(index, folder)
    assert index.count() == 1


def test_missing_folder_and_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="not a directory"):
        index_folder(make_index(), tmp_path / "nope")
    with pytest.raises(ImageReadError, match="cannot open"):
        load_image(tmp_path / "missing.png")
    assert list(image_files(tmp_path)) == []


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    a = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "x.png")
    image, _ = load_image(tmp_path / "x.png")
    px = np.asarray(image)[..., 0]
    assert px[0, 0] == 0 and px[1, 1] == 255 and 0 < px[0, 1] < px[1, 0] < 255


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


def fhir_server(patient_images: dict[str, bytes]) -> tuple[httpx.MockTransport, list[str]]:
    """A FHIR server answering Media / DocumentReference / ImagingStudy searches for patient p1."""
    seen: list[str] = []
    media = [
        {
            "resourceType": "Media",
            "id": "m1",
            "status": "completed",
            "subject": {"reference": "Patient/p1"},
            "createdDateTime": "2021-03-04T10:00:00Z",
            "modality": {"text": "XR"},
            "content": {
                "contentType": "image/png",
                "title": "Chest X-ray PA",
                "data": base64.b64encode(patient_images["red"]).decode(),
            },
        },
        {
            "resourceType": "Media",
            "id": "m2",
            "status": "completed",
            "subject": {"reference": "Patient/p1"},
            "content": {"contentType": "image/png", "url": "Binary/b1"},
        },
        {
            "resourceType": "Media",
            "id": "m3",
            "status": "completed",
            "subject": {"reference": "Patient/p1"},
            "content": {"contentType": "image/png", "data": "@@not base64@@"},
        },
        {
            "resourceType": "Media",
            "id": "other",
            "status": "completed",
            "subject": {"reference": "Patient/p2"},
            "content": {"contentType": "image/png", "data": base64.b64encode(patient_images["red"]).decode()},
        },
    ]
    docs = [
        {
            "resourceType": "DocumentReference",
            "id": "d1",
            "status": "current",
            "subject": {"reference": "Patient/p1"},
            "date": "2022-05-06T00:00:00Z",
            "description": "Dermatology photo",
            "content": [
                {"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"note").decode()}},
                {"attachment": {"contentType": "image/png", "url": "https://images.example/derm.png"}},
            ],
        }
    ]
    study = {
        "resourceType": "ImagingStudy",
        "id": "s1",
        "status": "available",
        "subject": {"reference": "Patient/p1"},
        "started": "2023-01-01T00:00:00Z",
        "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"}],
        "endpoint": [{"reference": "Endpoint/e1"}],
        "series": [
            {
                "uid": "1.2.3.4",
                "modality": {"code": "CT"},
                "description": "Chest CT",
                "instance": [{"uid": "1.2.3.4.5", "sopClass": {"code": "1.2.840.10008.5.1.4.1.1.2"}}],
            }
        ],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        path = request.url.path.removeprefix("/fhir/")
        patient = request.url.params.get("patient")
        if path == "Media":
            return httpx.Response(200, json=bundle(media if patient == "p1" else []))
        if path == "DocumentReference":
            return httpx.Response(200, json=bundle(docs if patient == "p1" else []))
        if path == "ImagingStudy":
            return httpx.Response(200, json=bundle([study] if patient == "p1" else []))
        if path == "Binary/b1":
            data = base64.b64encode(patient_images["green"]).decode()
            return httpx.Response(200, json={"resourceType": "Binary", "id": "b1", "data": data})
        if path == "Endpoint/e1":
            return httpx.Response(
                200,
                json={"resourceType": "Endpoint", "id": "e1", "address": "https://pacs.example/dicom-web"},
            )
        outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
        return httpx.Response(404, json=outcome)

    return httpx.MockTransport(handler), seen


def external(images: dict[str, bytes]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "images.example":
            return httpx.Response(200, content=images["blue"], headers={"Content-Type": "image/png"})
        if request.url.path.endswith("/instances/1.2.3.4.5/rendered"):
            assert "/studies/1.2.3/series/1.2.3.4/" in request.url.path
            return httpx.Response(200, content=images["gray"], headers={"Content-Type": "image/png"})
        return httpx.Response(404)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.fixture
def images() -> dict[str, bytes]:
    return {
        "red": png_bytes(solid((220, 10, 10))),
        "green": png_bytes(solid((10, 220, 10))),
        "blue": png_bytes(solid((10, 10, 220))),
        "gray": png_bytes(solid((90, 90, 90))),
    }


async def test_fhir_patient_images_keep_their_references(tmp_path: Path, images: dict[str, bytes]) -> None:
    transport, seen = fhir_server(images)
    index = make_index(tmp_path)
    async with FhirClient(BASE, transport=transport, retries=0) as client, external(images) as http:
        report = await index_fhir_patient(index, client, "p1", http=http)
    assert report.indexed == 4, report.summary()
    assert [s.name for s in report.skipped] == ["Media/m3"] and "base64" in report.skipped[0].reason
    assert all("patient=p1" in url for url in seen if "?" in url)
    assert index.count({"patient_id": "p2"}) == 0
    red = Image.open(io.BytesIO(images["red"]))
    top = index.search_image(red, k=1, filter={"patient_id": "p1"})[0]
    assert top.fhir_ref == "Media/m1" and top.metadata["title"] == "Chest X-ray PA"
    assert top.line().startswith("2021-03-04 Chest X-ray PA (XR) similarity 1.000")
    assert top.line().endswith("[Media/m1]")
    refs = {h.fhir_ref for h in index.search_image(red, k=10)}
    assert refs == {"Media/m1", "Media/m2", "DocumentReference/d1", "ImagingStudy/s1"}
    derm = next(h for h in index.search_image(red, k=10) if h.fhir_ref == "DocumentReference/d1")
    assert derm.path == "https://images.example/derm.png"
    assert derm.cite() == "[image: https://images.example/derm.png] [DocumentReference/d1]"
    study = next(h for h in index.search_image(red, k=10) if h.fhir_ref == "ImagingStudy/s1")
    assert study.metadata["modality"] == "CT" and study.metadata["sop_instance_uid"] == "1.2.3.4.5"


async def test_fhir_external_urls_are_off_by_default(tmp_path: Path, images: dict[str, bytes]) -> None:
    transport, _ = fhir_server(images)
    index = make_index()
    async with FhirClient(BASE, transport=transport, retries=0) as client:
        report = await index_fhir_patient(index, client, "p1")
    assert report.indexed == 2
    reasons = {s.name: s.reason for s in report.skipped}
    assert "external fetching is off" in reasons["DocumentReference/d1#content1"]
    assert "external fetching is off" in reasons["ImagingStudy/s1"]


async def test_fhir_patient_without_images(tmp_path: Path, images: dict[str, bytes]) -> None:
    transport, _ = fhir_server(images)
    index = make_index()
    async with FhirClient(BASE, transport=transport, retries=0) as client:
        report = await index_fhir_patient(index, client, "nobody")
    assert report.indexed == 0 and report.skipped == [] and index.count() == 0
    assert json.loads(json.dumps(report.summary())).startswith("indexed 0 images")
