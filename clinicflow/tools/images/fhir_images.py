"""Indexing a patient's images from FHIR: Media, DocumentReference attachments and ImagingStudy
instances (by their DICOMweb endpoint), each with its FHIR reference."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ImageReadError
from .reading import LoadedImage, load_image_bytes
from .report import IndexReport, SkippedImage

if TYPE_CHECKING:
    import httpx

    from .search import ImageIndex

__all__ = ["MAX_ATTACHMENT_BYTES", "FhirReader", "index_fhir_patient"]

MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024
_IMAGE_TYPES = ("image/", "application/dicom")


class FhirReader(Protocol):
    """The part of `clinicflow.fhir.FhirClient` that ingestion uses."""

    base_url: str

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any]: ...

    def search(self, resource_type: str) -> Any: ...


def _ref_id(reference: str, resource_type: str, server_base: str) -> str | None:
    """The id of a reference to a resource of `resource_type` on this server, else None."""
    from clinicflow.fhir.references import reference_key

    key = reference_key(reference, server_base)
    rtype, _, rid = (key or "").partition("/")
    return rid if rtype == resource_type else None


def _text(concept: Any) -> str | None:
    if isinstance(concept, list):
        concept = concept[0] if concept else None
    if not isinstance(concept, Mapping):
        return None
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if coding.get("display"):
            return str(coding["display"])
    return None


async def _attachment_bytes(
    attachment: Mapping[str, Any], name: str, client: FhirReader, http: httpx.AsyncClient | None
) -> bytes:
    """Bytes of an Attachment: inline `data`, a Binary on the FHIR server, or (opt-in) an external URL."""
    if attachment.get("data"):
        try:
            return base64.b64decode(attachment["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageReadError(name, f"attachment data is not valid base64 ({exc})") from exc
    url = str(attachment.get("url") or "")
    if not url:
        raise ImageReadError(name, "attachment has neither data nor url")
    binary_id = _ref_id(url, "Binary", client.base_url)
    if binary_id is not None:
        try:
            binary = await client.read("Binary", binary_id)
        except Exception as exc:
            raise ImageReadError(name, f"cannot read Binary/{binary_id} ({exc})") from exc
        return await _attachment_bytes({"data": binary.get("data")}, name, client, http)
    if not url.startswith(("http://", "https://")):
        raise ImageReadError(name, f"unsupported attachment url {url!r}")
    if http is None:
        raise ImageReadError(
            name, f"attachment url {url} is outside the FHIR server; external fetching is off"
        )
    return await _fetch(http, url, name)


async def _fetch(http: httpx.AsyncClient, url: str, name: str, accept: str | None = None) -> bytes:
    import httpx

    try:
        async with http.stream("GET", url, headers={"Accept": accept} if accept else None) as response:
            if response.is_error:
                raise ImageReadError(name, f"GET {url} answered HTTP {response.status_code}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_ATTACHMENT_BYTES:
                    raise ImageReadError(name, f"GET {url} is larger than {MAX_ATTACHMENT_BYTES} bytes")
            return bytes(data)
    except httpx.HTTPError as exc:
        raise ImageReadError(name, f"GET {url} failed ({type(exc).__name__}: {exc})") from exc


def _is_image_type(content_type: str | None) -> bool:
    return content_type is None or content_type.lower().startswith(_IMAGE_TYPES)


def _fhir_meta(ref: str, patient_id: str, **extra: Any) -> dict[str, Any]:
    meta = {"fhir_ref": ref, "patient_id": patient_id, "source": "fhir", "path": ref}
    meta.update({k: v for k, v in extra.items() if v not in (None, "")})
    return meta


async def _from_attachment(
    attachment: Mapping[str, Any],
    item_id: str,
    meta: dict[str, Any],
    client: FhirReader,
    http: httpx.AsyncClient | None,
) -> LoadedImage:
    content_type = attachment.get("contentType")
    data = await _attachment_bytes(attachment, item_id, client, http)
    image, fmt = load_image_bytes(data, item_id, content_type)
    meta = {**fmt, **meta}
    if attachment.get("url") and meta.get("path") == meta.get("fhir_ref"):
        meta["path"] = str(attachment["url"])
    if attachment.get("contentType"):
        meta["content_type"] = str(attachment["contentType"])
    return LoadedImage(id=item_id, image=image, metadata=meta)


async def _media(
    resource: Mapping[str, Any], patient_id: str, client: FhirReader, http: httpx.AsyncClient | None
) -> list[LoadedImage]:
    ref = f"Media/{resource['id']}"
    content = resource.get("content") or {}
    meta = _fhir_meta(
        ref,
        patient_id,
        date=resource.get("createdDateTime") or resource.get("issued"),
        title=content.get("title") or _text(resource.get("view")) or _text(resource.get("modality")),
        modality=_text(resource.get("modality")),
        body_site=_text(resource.get("bodySite")),
    )
    return [await _from_attachment(content, ref, meta, client, http)]


async def _document(
    resource: Mapping[str, Any], patient_id: str, client: FhirReader, http: httpx.AsyncClient | None
) -> tuple[list[LoadedImage], list[SkippedImage]]:
    ref = f"DocumentReference/{resource['id']}"
    loaded: list[LoadedImage] = []
    skipped: list[SkippedImage] = []
    for n, content in enumerate(resource.get("content") or []):
        attachment = content.get("attachment") or {}
        if not _is_image_type(attachment.get("contentType")):
            continue
        item_id = f"{ref}#content{n}"
        meta = _fhir_meta(
            ref,
            patient_id,
            date=resource.get("date"),
            title=attachment.get("title") or resource.get("description") or _text(resource.get("type")),
        )
        try:
            loaded.append(await _from_attachment(attachment, item_id, meta, client, http))
        except ImageReadError as exc:
            skipped.append(SkippedImage(item_id, exc.reason))
    return loaded, skipped


async def _imaging_study(
    resource: Mapping[str, Any], patient_id: str, client: FhirReader, http: httpx.AsyncClient | None
) -> tuple[list[LoadedImage], list[SkippedImage]]:
    """Instances of an ImagingStudy, rendered by its DICOMweb (WADO-RS) endpoint."""
    ref = f"ImagingStudy/{resource['id']}"
    addresses: list[str] = []
    for endpoint_ref in resource.get("endpoint") or []:
        endpoint_id = _ref_id(str(endpoint_ref.get("reference", "")), "Endpoint", client.base_url)
        if endpoint_id is None:
            continue
        try:
            endpoint = await client.read("Endpoint", endpoint_id)
        except Exception as exc:
            return [], [SkippedImage(ref, f"cannot read Endpoint/{endpoint_id} ({exc})")]
        if endpoint.get("address"):
            addresses.append(str(endpoint["address"]).rstrip("/"))
    if not addresses:
        return [], [SkippedImage(ref, "no image data: the study names no DICOMweb endpoint")]
    if http is None:
        return [], [SkippedImage(ref, f"images are at {addresses[0]}; external fetching is off")]
    study_uid = next(
        (
            str(i["value"]).removeprefix("urn:oid:")
            for i in resource.get("identifier") or []
            if str(i.get("system", "")) == "urn:dicom:uid"
        ),
        None,
    )
    if not study_uid:
        return [], [SkippedImage(ref, "no study instance UID (identifier with system urn:dicom:uid)")]
    loaded: list[LoadedImage] = []
    skipped: list[SkippedImage] = []
    for series in resource.get("series") or []:
        for instance in series.get("instance") or []:
            item_id = f"{ref}#{instance.get('uid')}"
            url = (
                f"{addresses[0]}/studies/{study_uid}/series/{series.get('uid')}"
                f"/instances/{instance.get('uid')}/rendered"
            )
            meta = _fhir_meta(
                ref,
                patient_id,
                path=url,
                date=resource.get("started"),
                title=series.get("description") or resource.get("description"),
                modality=(series.get("modality") or {}).get("code"),
                body_site=(series.get("bodySite") or {}).get("display"),
                sop_instance_uid=instance.get("uid"),
            )
            try:
                data = await _fetch(http, url, item_id, accept="image/png, image/jpeg;q=0.9")
                image, fmt = load_image_bytes(data, item_id)
                loaded.append(LoadedImage(id=item_id, image=image, metadata={**fmt, **meta}))
            except ImageReadError as exc:
                skipped.append(SkippedImage(item_id, exc.reason))
    return loaded, skipped


async def index_fhir_patient(
    index: ImageIndex,
    client: FhirReader,
    patient_id: str,
    *,
    http: httpx.AsyncClient | None = None,
    limit: int = 500,
) -> IndexReport:
    """Index one patient's images from Media, DocumentReference and ImagingStudy, with FHIR references.

    Inline and Binary attachments come from the FHIR server; external URLs and DICOMweb endpoints
    are fetched only through `http` (None turns external fetching off).
    """
    from clinicflow.fhir import FhirBadRequestError, FhirNotFoundError
    from clinicflow.fhir.references import belongs_to_patient

    started = time.perf_counter()
    report = IndexReport()
    loaded: list[LoadedImage] = []
    for resource_type in ("Media", "DocumentReference", "ImagingStudy"):
        try:
            resources = await client.search(resource_type).where(patient=patient_id).all(limit=limit)
        except (FhirBadRequestError, FhirNotFoundError) as exc:
            report.skipped.append(SkippedImage(f"{resource_type}?patient={patient_id}", str(exc)))
            continue
        for resource in resources:
            if resource.get("resourceType") != resource_type or not belongs_to_patient(
                resource, patient_id, client.base_url
            ):
                continue
            if resource_type == "Media":
                try:
                    loaded += await _media(resource, patient_id, client, http)
                except ImageReadError as exc:
                    report.skipped.append(SkippedImage(exc.name, exc.reason))
            else:
                reader = _document if resource_type == "DocumentReference" else _imaging_study
                found, skipped = await reader(resource, patient_id, client, http)
                loaded += found
                report.skipped += skipped
    index.add(loaded)
    index.persist()
    report.indexed = len(loaded)
    report.seconds = time.perf_counter() - started
    return report
