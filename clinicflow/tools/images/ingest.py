"""Reading images for the index: files (PNG, JPEG, DICOM with windowing) and a patient's FHIR attachments.

An image that cannot be read is skipped with its name and the reason; the rest are indexed.
"""

from __future__ import annotations

import base64
import binascii
import io
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import ImageReadError

if TYPE_CHECKING:
    import httpx
    from PIL import Image
    from pydicom.dataset import Dataset

    from .search import ImageIndex

__all__ = [
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "FhirReader",
    "IndexReport",
    "LoadedImage",
    "SkippedImage",
    "dicom_to_uint8",
    "image_files",
    "index_fhir_patient",
    "index_folder",
    "load_image",
    "load_image_bytes",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024
_IMAGE_TYPES = ("image/", "application/dicom")
_DICOM_TAGS = ("Modality", "BodyPartExamined", "StudyDate", "StudyDescription", "SeriesDescription")


@dataclass(frozen=True)
class SkippedImage:
    """An image left out of the index, with the reason."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class IndexReport:
    """What one indexing run did: how many images went in, which were skipped and why."""

    indexed: int = 0
    skipped: list[SkippedImage] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        rate = f" ({self.indexed / self.seconds:.1f} images/s)" if self.seconds > 0 and self.indexed else ""
        lines = [f"indexed {self.indexed} images in {self.seconds:.1f} s{rate}, skipped {len(self.skipped)}"]
        lines += [f"  skipped {s}" for s in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded RGB image with its index id and metadata."""

    id: str
    image: Image.Image
    metadata: dict[str, Any]


# -- pixels ------------------------------------------------------------------------------------------


def _first(value: Any) -> float | None:
    """First value of a possibly multi-valued DICOM number (e.g. WindowCenter "40\\400")."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return _first(value[0]) if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_unit(x: np.ndarray, center: float | None, width: float | None, function: str) -> np.ndarray:
    """Modality values to [0, 1] by the DICOM VOI window (PS3.3 C.11.2.1.2), else min-max."""
    if center is not None and width is not None and width > 0:
        if function == "SIGMOID":
            return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
        if function == "LINEAR_EXACT":
            return np.clip((x - center) / width + 0.5, 0.0, 1.0)
        if width <= 1:
            return (x > center - 0.5).astype(np.float64)
        return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    lo, hi = float(np.min(x)), float(np.max(x))
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def dicom_to_uint8(ds: Dataset, name: str = "DICOM") -> np.ndarray:
    """Displayable 8-bit pixels of one DICOM frame (the middle one of a multi-frame image).

    Grayscale: RescaleSlope/Intercept, then the first WindowCenter/WindowWidth (VOI LUT function
    LINEAR, LINEAR_EXACT or SIGMOID), min-max when no window is given; MONOCHROME1 is inverted.
    Colour images come as RGB (pydicom converts YCbCr).
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageReadError(name, "DICOM file has no pixel data")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ImageReadError(name, f"cannot decode DICOM pixel data ({type(exc).__name__}: {exc})") from exc
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1 and arr.ndim == (4 if samples > 1 else 3):
        arr = arr[frames // 2]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if samples > 1:
        x = arr.astype(np.float64)
        if arr.dtype != np.uint8:
            x = _to_unit(x, None, None, "LINEAR") * 255.0
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    x = arr.astype(np.float64)
    slope = _first(ds.get("RescaleSlope"))
    intercept = _first(ds.get("RescaleIntercept"))
    x = x * (slope if slope is not None else 1.0) + (intercept if intercept is not None else 0.0)
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    unit = _to_unit(x, _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth")), function)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


def _dicom_metadata(ds: Dataset) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": "dicom"}
    for tag in _DICOM_TAGS:
        value = ds.get(tag)
        if value not in (None, ""):
            meta[tag[0].lower() + tag[1:]] = str(value)
    if ds.get("SOPInstanceUID"):
        meta["sop_instance_uid"] = str(ds.SOPInstanceUID)
    return meta


def _read_dicom(source: str | Path | io.BytesIO, name: str) -> tuple[Image.Image, dict[str, Any]]:
    import pydicom
    from PIL import Image as PILImage

    try:
        ds = pydicom.dcmread(source, force=True)
    except Exception as exc:
        raise ImageReadError(name, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    pixels = dicom_to_uint8(ds, name)
    return PILImage.fromarray(pixels).convert("RGB"), _dicom_metadata(ds)


def _read_raster(source: str | Path | io.BytesIO, name: str) -> tuple[Image.Image, dict[str, Any]]:
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with PILImage.open(source) as im:
            im.load()
            fmt = (im.format or "").lower()
            image = ImageOps.exif_transpose(im)
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                unit = _to_unit(np.asarray(image, dtype=np.float64), None, None, "LINEAR")
                image = PILImage.fromarray(np.rint(unit * 255).astype(np.uint8))
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, PILImage.DecompressionBombError) as exc:
        raise ImageReadError(name, f"not a readable image ({exc})") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(name, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    return rgb, {"format": fmt or "image"}


def _looks_dicom(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def load_image(path: str | Path) -> tuple[Image.Image, dict[str, Any]]:
    """An image file (PNG, JPEG or DICOM) as RGB, with metadata; raises `ImageReadError`."""
    p = Path(path)
    name = str(p)
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ImageReadError(name, f"cannot open ({exc.strerror or exc})") from exc
    if p.suffix.lower() in DICOM_SUFFIXES or _looks_dicom(head):
        return _read_dicom(p, name)
    return _read_raster(p, name)


def load_image_bytes(
    data: bytes, name: str, content_type: str | None = None
) -> tuple[Image.Image, dict[str, Any]]:
    """Image bytes (an attachment) as RGB, with metadata; DICOM by content type or preamble."""
    if not data:
        raise ImageReadError(name, "empty image data")
    if (content_type or "").lower().startswith("application/dicom") or _looks_dicom(data[:132]):
        return _read_dicom(io.BytesIO(data), name)
    return _read_raster(io.BytesIO(data), name)


# -- folders ------------------------------------------------------------------------------------------


def image_files(folder: str | Path) -> Iterator[Path]:
    """Image files under `folder`, recursively, in sorted order; extensionless DICOM files included."""
    root = Path(folder)
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        suffix = p.suffix.lower()
        if suffix in IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES:
            yield p
        elif not suffix:
            try:
                with open(p, "rb") as fh:
                    if _looks_dicom(fh.read(132)):
                        yield p
            except OSError:
                continue


def _load_file(path: Path, patient_id: str | None) -> LoadedImage:
    image, meta = load_image(path)
    resolved = str(path.resolve())
    meta.update({"path": resolved, "name": path.name, "source": "file"})
    if patient_id:
        meta["patient_id"] = patient_id
    return LoadedImage(id=f"file:{resolved}", image=image, metadata=meta)


def index_folder(
    index: ImageIndex,
    folder: str | Path,
    *,
    patient_id: str | None = None,
    chunk: int = 256,
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> IndexReport:
    """Index every image under `folder` (re-indexing a file replaces it); returns counts and skips.

    `patient_id` tags every image with a FHIR Patient id, for patient-scoped search.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ImageReadError(str(root), "not a directory")
    started = time.perf_counter()
    report = IndexReport()
    files = list(image_files(root))
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="image-read") as pool:
        for start in range(0, len(files), chunk):
            batch: list[LoadedImage] = []
            futures = [pool.submit(_load_file, f, patient_id) for f in files[start : start + chunk]]
            for f, fut in zip(files[start : start + chunk], futures, strict=True):
                try:
                    batch.append(fut.result())
                except ImageReadError as exc:
                    report.skipped.append(SkippedImage(str(f), exc.reason))
            index.add(batch)
            report.indexed += len(batch)
            if progress is not None:
                progress(min(start + chunk, len(files)), len(files))
    index.persist()
    report.seconds = time.perf_counter() - started
    return report


# -- FHIR --------------------------------------------------------------------------------------------


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
