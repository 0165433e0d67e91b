"""Decoding images: files and bytes (PNG, JPEG, DICOM with windowing) as RGB, with their metadata."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ImageReadError

if TYPE_CHECKING:
    from PIL import Image
    from pydicom.dataset import Dataset

__all__ = [
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "LoadedImage",
    "dicom_to_uint8",
    "image_files",
    "load_image",
    "load_image_bytes",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_DICOM_TAGS = ("Modality", "BodyPartExamined", "StudyDate", "StudyDescription", "SeriesDescription")


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
