"""MedSigLIP image retrieval: encoder, vector stores, ingestion (files, DICOM, FHIR), search, agent tool."""

from .encoder import Encoder, ImageEncoder, Preprocess
from .errors import EncoderLoadError, ImageIndexError, ImageReadError, ImageToolError, VectorStoreError
from .fhir_images import index_fhir_patient
from .ingest import index_folder
from .reading import LoadedImage, dicom_to_uint8, image_files, load_image, load_image_bytes
from .report import IndexReport, SkippedImage
from .search import ImageHit, ImageIndex, LabelScore, zero_shot
from .store import EmbeddedVectorStore, VectorHit, VectorStore, open_store
from .tool import make_cohort_image_tool, make_image_tools

__all__ = [
    "EmbeddedVectorStore",
    "Encoder",
    "EncoderLoadError",
    "ImageEncoder",
    "ImageHit",
    "ImageIndex",
    "ImageIndexError",
    "ImageReadError",
    "ImageToolError",
    "IndexReport",
    "LabelScore",
    "LoadedImage",
    "Preprocess",
    "SkippedImage",
    "VectorHit",
    "VectorStore",
    "VectorStoreError",
    "dicom_to_uint8",
    "image_files",
    "index_fhir_patient",
    "index_folder",
    "load_image",
    "load_image_bytes",
    "make_cohort_image_tool",
    "make_image_tools",
    "open_store",
    "zero_shot",
]
