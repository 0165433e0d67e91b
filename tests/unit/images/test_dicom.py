"""DICOM reading: modality rescale, VOI windowing (single and multi-valued), MONOCHROME1, min-max."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from clinicflow.tools.images import ImageReadError, dicom_to_uint8, load_image, load_image_bytes

from .fakes import write_dicom


def linear_window(hu: float, center: float, width: float) -> int:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR VOI function to 8 bits, written out independently."""
    if hu <= center - 0.5 - (width - 1) / 2:
        return 0
    if hu > center - 0.5 + (width - 1) / 2:
        return 255
    return round(((hu - (center - 0.5)) / (width - 1) + 0.5) * 255)


# stored values; with slope 1 and intercept -1024 they are HU -1024, -1000, -160, 0, 40, 100, 240, 1000
RAW = np.array([[0, 24, 864, 1024], [1064, 1124, 1264, 2024]], dtype=np.uint16)
HU = RAW.astype(np.float64) - 1024


def test_rescale_then_window(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "ct.dcm", RAW, center=40, width=400, slope=1, intercept=-1024)
    out = dicom_to_uint8(pydicom.dcmread(path))
    expected = np.vectorize(lambda h: linear_window(h, 40, 400))(HU)
    assert out.dtype == np.uint8
    assert np.array_equal(out, expected)
    assert out[0, 0] == 0 and out[1, 3] == 255 and 0 < out[1, 0] < 255


def test_multi_valued_window_uses_the_first(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "ct.dcm", RAW, center=[40, 400], width=[400, 2000], slope=1, intercept=-1024
    )
    ds = pydicom.dcmread(path)
    assert len(ds.WindowCenter) == 2
    expected = np.vectorize(lambda h: linear_window(h, 40, 400))(HU)
    assert np.array_equal(dicom_to_uint8(ds), expected)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    mono2 = write_dicom(tmp_path / "m2.dcm", RAW, center=40, width=400, slope=1, intercept=-1024)
    mono1 = write_dicom(
        tmp_path / "m1.dcm", RAW, photometric="MONOCHROME1", center=40, width=400, slope=1, intercept=-1024
    )
    a = dicom_to_uint8(pydicom.dcmread(mono2))
    b = dicom_to_uint8(pydicom.dcmread(mono1))
    assert np.array_equal(b, 255 - a)


def test_no_window_falls_back_to_min_max(tmp_path: Path) -> None:
    raw = np.array([[100, 200], [300, 500]], dtype=np.uint16)
    out = dicom_to_uint8(pydicom.dcmread(write_dicom(tmp_path / "x.dcm", raw)))
    expected = np.rint((raw - 100) / 400 * 255).astype(np.uint8)
    assert np.array_equal(out, expected)


def test_signed_pixels_and_slope(tmp_path: Path) -> None:
    raw = np.array([[-500, 0], [250, 500]], dtype=np.int16)
    path = write_dicom(tmp_path / "s.dcm", raw, center=0, width=2001, slope=2, intercept=0)
    out = dicom_to_uint8(pydicom.dcmread(path))
    expected = np.vectorize(lambda v: linear_window(2 * v, 0, 2001))(raw.astype(np.float64))
    assert np.array_equal(out, expected)


def test_sigmoid_voi_function(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "g.dcm", RAW, center=40, width=400, slope=1, intercept=-1024, voi_function="SIGMOID"
    )
    out = dicom_to_uint8(pydicom.dcmread(path)).astype(np.float64)
    expected = 255 / (1 + np.exp(-4 * (HU - 40) / 400))
    assert np.abs(out - expected).max() <= 0.5


def test_load_image_reads_dicom_by_content_without_suffix(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "noext", RAW, center=40, width=400, slope=1, intercept=-1024)
    image, meta = load_image(path)
    assert image.mode == "RGB" and image.size == (4, 2)
    assert meta["format"] == "dicom" and meta["modality"] == "CT" and meta["bodyPartExamined"] == "CHEST"
    px = np.asarray(image)
    assert np.array_equal(px[..., 0], px[..., 2])


def test_dicom_bytes_and_missing_pixels(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "ct.dcm", RAW, center=40, width=400, slope=1, intercept=-1024)
    image, _ = load_image_bytes(path.read_bytes(), "attachment", "application/dicom")
    assert image.size == (4, 2)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    with pytest.raises(ImageReadError, match="no pixel data"):
        dicom_to_uint8(ds, "ct.dcm")


def test_multi_frame_uses_the_middle_frame(tmp_path: Path) -> None:
    frames = np.stack([np.full((2, 3), 10 * f, dtype=np.uint16) for f in range(3)])
    frames[1, 0, 0] = 500
    ds = pydicom.dcmread(write_dicom(tmp_path / "mf.dcm", frames[0]))
    ds.NumberOfFrames = 3
    ds.PixelData = frames.astype("<u2").tobytes()
    out = dicom_to_uint8(ds)
    middle = frames[1].astype(np.float64)
    expected = np.rint((middle - middle.min()) / (middle.max() - middle.min()) * 255).astype(np.uint8)
    assert out.shape == (2, 3) and np.array_equal(out, expected)
