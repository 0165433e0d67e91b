"""The image index: a MedSigLIP encoder over a vector store; text->image, image->image, zero-shot labels."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .encoder import Encoder, ImageEncoder
from .errors import ImageIndexError
from .reading import LoadedImage, load_image
from .store import ClosedOnExit, Filter, VectorHit, VectorStore

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["MANIFEST", "ImageHit", "ImageIndex", "LabelMode", "LabelScore", "zero_shot"]

MANIFEST = "index.json"
LabelMode = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class LabelScore:
    """A zero-shot label with its SigLIP logit and probability."""

    label: str
    probability: float
    logit: float


@dataclass(frozen=True)
class ImageHit:
    """One retrieved image: similarity, where it is (path or URL) and its FHIR reference, if any."""

    id: str
    score: float
    path: str
    fhir_ref: str | None
    metadata: dict[str, Any]
    labels: tuple[LabelScore, ...] = ()
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_vector_hit(cls, hit: VectorHit) -> ImageHit:
        meta = hit.metadata
        return cls(
            id=hit.id,
            score=hit.score,
            path=str(meta.get("path") or hit.id),
            fhir_ref=meta.get("fhir_ref"),
            metadata=meta,
            vector=hit.vector,
        )

    def cite(self) -> str:
        """`[image: <path>]`, then `[<FHIR reference>]` when the image came from the record."""
        cited = f"[image: {self.path}]"
        if self.fhir_ref and self.fhir_ref != self.path:
            cited += f" [{self.fhir_ref}]"
        elif self.fhir_ref:
            cited = f"[{self.fhir_ref}]"
        return cited

    def line(self) -> str:
        """A compact cited line: date, description, similarity, labels, citation."""
        meta = self.metadata
        parts = [str(meta["date"])[:10]] if meta.get("date") else []
        parts.append(str(meta.get("title") or meta.get("name") or Path(self.path).name))
        if meta.get("modality"):
            parts.append(f"({meta['modality']})")
        parts.append(f"similarity {self.score:.3f}")
        if self.labels:
            parts.append("labels " + ", ".join(f"{s.label} {s.probability:.2f}" for s in self.labels))
        parts.append(self.cite())
        return " ".join(parts)


def zero_shot(
    image_vectors: np.ndarray,
    label_vectors: np.ndarray,
    labels: Sequence[str],
    scale: float,
    bias: float,
    mode: LabelMode = "softmax",
) -> list[list[LabelScore]]:
    """SigLIP zero-shot labels per image: logits = scale * cosine + bias, then softmax or sigmoid.

    Softmax picks among the labels (they sum to 1); sigmoid scores each label on its own, as SigLIP
    was trained. Each list is sorted by probability, highest first.
    """
    logits = scale * (np.asarray(image_vectors, np.float64) @ np.asarray(label_vectors, np.float64).T) + bias
    if mode == "softmax":
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
    elif mode == "sigmoid":
        probs = 1.0 / (1.0 + np.exp(-logits))
    else:
        raise ValueError(f"mode must be 'softmax' or 'sigmoid', got {mode!r}")
    return [
        sorted(
            (LabelScore(label, float(p), float(lg)) for label, p, lg in zip(labels, prow, lrow, strict=True)),
            key=lambda s: -s.probability,
        )
        for prow, lrow in zip(probs, logits, strict=True)
    ]


class ImageIndex(ClosedOnExit):
    """Images embedded by one encoder in one vector store; built by `ingest`, queried by the tools."""

    def __init__(self, encoder: Encoder, store: VectorStore, *, path: Path | None = None) -> None:
        self.encoder = encoder
        self.store = store
        self.path = path
        self._checked = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ImageIndex(encoder={self.encoder.name!r}, store={self.store!r})"

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        encoder: str | Path | Encoder | None = None,
        database_url: str | None = None,
        table: str = "clinicflow_images",
        create: bool = False,
        device: str | None = None,
        dtype: str | None = None,
    ) -> ImageIndex:
        """Open (with `create`: start) the index at `path`; the encoder defaults to the one that built it.

        With `database_url` the vectors live in Postgres (pgvector) and `path` keeps only the manifest.
        """
        from .store import open_store

        root = Path(path).expanduser()
        manifest_file = root / MANIFEST
        manifest: dict[str, Any] = {}
        if manifest_file.exists():
            try:
                manifest = json.loads(manifest_file.read_text())
            except ValueError as exc:
                raise ImageIndexError(f"the image index manifest {manifest_file} is not valid JSON") from exc
        elif not create:
            raise ImageIndexError(
                f"no image index at {root}; build one with `clinicflow images index DIR --encoder PATH`"
            )
        if manifest.get("store") == "pgvector" and not database_url:
            raise ImageIndexError(
                f"the image index at {root} keeps its vectors in Postgres (table {manifest.get('table')}); "
                "give its database URL"
            )
        if encoder is None:
            if not manifest.get("encoder"):
                raise ImageIndexError(f"the image index at {root} names no encoder; give --encoder PATH")
            encoder = manifest["encoder"]
        enc = (
            ImageEncoder(encoder, device=device, dtype=dtype) if isinstance(encoder, (str, Path)) else encoder
        )
        table = manifest.get("table", table)
        store = open_store(root / "vectors", database_url=database_url, dim=manifest.get("dim"), table=table)
        index = cls(enc, store, path=root)
        if create and not manifest_file.exists():
            root.mkdir(parents=True, exist_ok=True)
            index._write_manifest()
        return index

    def _write_manifest(self) -> None:
        if self.path is None:
            return
        manifest = {
            "encoder": self.encoder.name,
            "dim": self.store.dim,
            "store": "pgvector" if type(self.store).__name__ == "PgVectorStore" else "embedded",
        }
        if manifest["store"] == "pgvector":
            manifest["table"] = getattr(self.store, "table", None)
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.replace(self.path / MANIFEST)

    def _check_dim(self) -> None:
        if self._checked:
            return
        stored = self.store.dim
        if stored is not None and stored != self.encoder.dim:
            raise ImageIndexError(
                f"the index holds {stored}-dimensional vectors but the encoder {self.encoder.name} "
                f"produces {self.encoder.dim}; re-index with the same encoder"
            )
        self._checked = True

    def add(self, items: Sequence[LoadedImage]) -> None:
        """Encode and store images (an existing id is replaced)."""
        if not items:
            return
        self._check_dim()
        vectors = self.encoder.encode_images([item.image for item in items])
        with self._lock:
            first = self.store.dim is None
            self.store.add([item.id for item in items], vectors, [item.metadata for item in items])
            if first:
                self._write_manifest()

    def persist(self) -> None:
        self.store.persist()
        self._write_manifest()

    def count(self, filter: Filter | None = None) -> int:
        return self.store.count(filter)

    def search_vector(self, vector: np.ndarray, k: int = 5, filter: Filter | None = None) -> list[ImageHit]:
        """Nearest images to an embedding."""
        return [ImageHit.from_vector_hit(h) for h in self.store.search(vector, k, filter)]

    def search_text(self, query: str, k: int = 5, filter: Filter | None = None) -> list[ImageHit]:
        """Images nearest to a text description (shared MedSigLIP image-text space)."""
        if not query.strip():
            raise ValueError("the text query is empty")
        self._check_dim()
        return self.search_vector(self.encoder.encode_texts([query])[0], k, filter)

    def search_image(
        self, image: Image.Image | str | Path, k: int = 5, filter: Filter | None = None
    ) -> list[ImageHit]:
        """Images nearest to a query image (a PIL image or a PNG/JPEG/DICOM file)."""
        self._check_dim()
        if isinstance(image, (str, Path)):
            image, _ = load_image(image)
        return self.search_vector(self.encoder.encode_images([image])[0], k, filter)

    def label_image(
        self, image: Image.Image | str | Path, labels: Sequence[str], *, mode: LabelMode = "softmax"
    ) -> list[LabelScore]:
        """Zero-shot labels of one image against `labels`."""
        if isinstance(image, (str, Path)):
            image, _ = load_image(image)
        vector = self.encoder.encode_images([image])
        return self._labels(vector, labels, mode)[0]

    def label_hits(
        self, hits: Sequence[ImageHit], labels: Sequence[str], *, mode: LabelMode = "softmax"
    ) -> list[ImageHit]:
        """The hits with zero-shot labels, scored from their stored embeddings (no re-encoding)."""
        if not hits:
            return []
        missing = [h.id for h in hits if h.vector is None]
        if missing:
            raise ImageIndexError(f"no stored embedding for {', '.join(missing)}")
        vectors = np.stack([np.asarray(h.vector, dtype=np.float32) for h in hits])
        per_hit = self._labels(vectors, labels, mode)
        return [replace(h, labels=tuple(scores)) for h, scores in zip(hits, per_hit, strict=True)]

    def _labels(
        self, image_vectors: np.ndarray, labels: Sequence[str], mode: LabelMode
    ) -> list[list[LabelScore]]:
        clean = [label.strip() for label in labels if label.strip()]
        if not clean:
            raise ValueError("give at least one non-empty label")
        scale, bias = self.encoder.logit_params()
        return zero_shot(image_vectors, self.encoder.encode_texts(clean), clean, scale, bias, mode)

    def close(self) -> None:
        self.store.close()
        close = getattr(self.encoder, "close", None)
        if callable(close):
            close()
