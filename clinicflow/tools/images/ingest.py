"""Reading images for the index: files (PNG, JPEG, DICOM with windowing) and a patient's FHIR attachments.

An image that cannot be read is skipped with its name and the reason; the rest are indexed. This module
indexes folders; decoding is in `reading`, FHIR attachments in `fhir_images`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ImageReadError
from .fhir_images import MAX_ATTACHMENT_BYTES as MAX_ATTACHMENT_BYTES
from .fhir_images import FhirReader as FhirReader
from .fhir_images import index_fhir_patient as index_fhir_patient
from .reading import DICOM_SUFFIXES as DICOM_SUFFIXES
from .reading import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from .reading import LoadedImage, image_files, load_image
from .reading import dicom_to_uint8 as dicom_to_uint8
from .reading import load_image_bytes as load_image_bytes
from .report import IndexReport, SkippedImage

if TYPE_CHECKING:
    from .search import ImageIndex

# Besides `index_folder`, the names this module held before decoding (`reading`) and FHIR ingestion
# (`fhir_images`) moved out stay importable from here (the `X as X` imports).
__all__ = ["index_folder"]


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
