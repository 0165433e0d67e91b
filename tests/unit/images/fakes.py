"""Test doubles and fixtures for the image tools: a deterministic fake encoder and DICOM builders."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

DIM = 48


class FakeEncoder:
    """Images -> their 4x4 RGB thumbnail (48-d), texts -> a word-hash vector; both L2-normalised."""

    name = "fake-encoder"
    dim = DIM

    def __init__(self) -> None:
        self.image_calls = 0

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.image_calls += 1
        thumbs = [im.convert("RGB").resize((4, 4), Image.Resampling.BILINEAR) for im in images]
        rows = [np.asarray(t, np.float32).ravel() - 127.5 for t in thumbs]
        v = np.stack(rows) if rows else np.zeros((0, DIM), np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                h = int(hashlib.sha256(word.encode()).hexdigest(), 16)
                out[i, h % DIM] += 1.0 if (h >> 8) % 2 else -1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)

    def logit_params(self) -> tuple[float, float]:
        return 10.0, -5.0


def solid(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    """A one-colour RGB image with a bright corner, so thumbnails differ in structure too."""
    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[:] = color
    a[: size[1] // 3, : size[0] // 3] = 255
    return Image.fromarray(a)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    center: float | list[float] | None = None,
    width: float | list[float] | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    voi_function: str | None = None,
) -> Path:
    """An uncompressed single-frame grayscale DICOM file (16-bit, signed if `pixels` is signed)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.StudyDate = "20240102"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    signed = np.issubdtype(pixels.dtype, np.signedinteger)
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
    if center is not None:
        ds.WindowCenter = center
        ds.WindowWidth = width
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    ds.save_as(path, enforce_file_format=True)
    return path
