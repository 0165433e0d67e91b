"""Errors of the image retrieval tools.

ImageToolError
├── EncoderLoadError     the MedSigLIP checkpoint is missing or unusable (names the path)
├── ImageReadError       one image could not be read or decoded (names the image and reason)
├── VectorStoreError     the vector store refused an operation or cannot be opened
└── ImageIndexError      the image index is missing, or built with another encoder
"""

from __future__ import annotations

__all__ = [
    "EncoderLoadError",
    "ImageIndexError",
    "ImageReadError",
    "ImageToolError",
    "VectorStoreError",
]


class ImageToolError(Exception):
    """Base of every error raised by `clinicflow.tools.images`."""


class EncoderLoadError(ImageToolError):
    """The encoder checkpoint at `path` cannot be loaded."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"cannot load a MedSigLIP encoder from {path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ImageReadError(ImageToolError):
    """One image (file, DICOM or FHIR attachment) could not be read."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class VectorStoreError(ImageToolError):
    """The vector store cannot be opened or refused an operation."""


class ImageIndexError(ImageToolError):
    """The image index is missing, or does not match the encoder given."""
