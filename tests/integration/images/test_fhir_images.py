"""Indexing a patient's images from the embedded FHIR server, with the tiny SigLIP encoder."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from clinicflow.fhir import FhirClient
from clinicflow.tools.images import ImageIndex, index_fhir_patient


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def media(patient: str, data: bytes, title: str) -> dict:
    return {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
        "createdDateTime": "2024-02-03T09:00:00Z",
        "content": {"contentType": "image/png", "title": title, "data": base64.b64encode(data).decode()},
    }


async def test_patient_images_from_the_fhir_server(
    tmp_path: Path, tiny_siglip: Path, fhir_client: FhirClient, patient_ids: list[str]
) -> None:
    me, other = patient_ids[0], patient_ids[1]
    xray, photo, foreign = png(1), png(2), png(3)
    m1 = await fhir_client.create(media(me, xray, "Chest X-ray PA"))
    await fhir_client.create(media(other, foreign, "Other patient's image"))
    binary = await fhir_client.create(
        {"resourceType": "Binary", "contentType": "image/png", "data": base64.b64encode(photo).decode()}
    )
    doc = await fhir_client.create(
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{me}"},
            "date": "2024-02-04T10:00:00Z",
            "description": "Wound photo",
            "content": [{"attachment": {"contentType": "image/png", "url": f"Binary/{binary['id']}"}}],
        }
    )
    with ImageIndex.open(tmp_path / "idx", encoder=tiny_siglip, create=True) as index:
        report = await index_fhir_patient(index, fhir_client, me)
        refs = {h.fhir_ref for h in index.search_image(Image.open(io.BytesIO(xray)), k=50)}
        assert f"Media/{m1['id']}" in refs and f"DocumentReference/{doc['id']}" in refs
        assert all(h.metadata["patient_id"] == me for h in index.search_text("chest x-ray", k=50))
        assert report.indexed == index.count() == len(refs)
        top = index.search_image(Image.open(io.BytesIO(photo)), k=1)[0]
        assert top.fhir_ref == f"DocumentReference/{doc['id']}" and top.line().startswith(
            "2024-02-04 Wound photo"
        )
        assert top.line().endswith(f"[DocumentReference/{doc['id']}]")
        ours = (f"Media/{m1['id']}", f"DocumentReference/{doc['id']}")
        assert not [s for s in report.skipped if s.name.startswith(ours)], report.summary()
