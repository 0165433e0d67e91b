"""MedSigLIP encoder: images and texts into one L2-normalised embedding space.

Loads a local checkpoint in the `google/medsiglip-448` layout (SigLIP `config.json`, weights,
`preprocessor_config.json`, tokenizer files) through transformers' SigLIP classes, once, on first
use. On CUDA it runs in bfloat16 with batches of 64; image resizing runs in a thread pool and
overlaps the previous batch's forward pass, and rescale/normalise run on the device.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import EncoderLoadError

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["Encoder", "ImageEncoder", "Preprocess", "default_device"]

_SIGLIP_TYPES = ("siglip", "siglip_vision_model")
_DTYPES = ("float32", "float16", "bfloat16")


class Encoder(Protocol):
    """What an image index needs from an encoder (the real one is `ImageEncoder`)."""

    @property
    def dim(self) -> int: ...

    @property
    def name(self) -> str: ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def logit_params(self) -> tuple[float, float]: ...


@dataclass(frozen=True)
class Preprocess:
    """Image preprocessing of a SigLIP checkpoint: resize to `size`, rescale, normalise."""

    height: int
    width: int
    resample: int = 2
    rescale_factor: float = 1 / 255
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @classmethod
    def from_dir(cls, path: Path, image_size: int) -> Preprocess:
        """Read `preprocessor_config.json`; defaults follow SigLIP when a field is absent."""
        file = path / "preprocessor_config.json"
        cfg: dict[str, Any] = json.loads(file.read_text()) if file.exists() else {}
        size = cfg.get("size") or {}
        height = int(size.get("height", size.get("shortest_edge", image_size)))
        width = int(size.get("width", size.get("shortest_edge", image_size)))
        mean = cfg.get("image_mean", cls.mean) if cfg.get("do_normalize", True) else (0.0, 0.0, 0.0)
        std = cfg.get("image_std", cls.std) if cfg.get("do_normalize", True) else (1.0, 1.0, 1.0)
        return cls(
            height=height,
            width=width,
            resample=int(cfg.get("resample", 2)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0,
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
        )

    def resize(self, image: Image.Image) -> np.ndarray:
        """One image as an RGB uint8 array of the model's input size."""
        from PIL import Image as PILImage

        rgb = image.convert("RGB")
        if rgb.size != (self.width, self.height):
            rgb = rgb.resize((self.width, self.height), resample=PILImage.Resampling(self.resample))
        return np.asarray(rgb, dtype=np.uint8)

    def to_pixels(self, batch: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """A (n, H, W, 3) uint8 batch as normalised (n, 3, H, W) pixel values on `device`."""
        import torch

        t = torch.from_numpy(batch)
        if device.type == "cuda":
            t = t.pin_memory().to(device, non_blocking=True)
        t = t.permute(0, 3, 1, 2).to(torch.float32)
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return ((t * self.rescale_factor - mean) / std).to(dtype)


def default_device() -> str:
    """`cuda` when a GPU is visible, else `cpu`."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class _Loaded:
    model: Any
    vision: Any
    text: Any | None
    tokenizer: Any | None
    preprocess: Preprocess
    device: torch.device
    dtype: torch.dtype
    dim: int
    text_length: int
    logit_scale: float | None
    logit_bias: float | None
    tokenizer_error: str | None = None


def _check_checkpoint(path: Path) -> None:
    if not path.exists():
        raise EncoderLoadError(path, "no such directory")
    if not path.is_dir():
        raise EncoderLoadError(path, "not a directory (give the checkpoint folder)")
    if not (path / "config.json").is_file():
        raise EncoderLoadError(
            path, "no config.json (expected a google/medsiglip-448 style checkpoint folder)"
        )


class ImageEncoder:
    """A MedSigLIP (SigLIP) checkpoint folder as a batched image/text encoder; loads lazily, once.

    `device` defaults to CUDA when present; `dtype` to bfloat16 on CUDA and float32 on CPU.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        workers: int | None = None,
    ) -> None:
        if dtype is not None and dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        self.path = Path(path).expanduser()
        _check_checkpoint(self.path)
        self._device = device
        self._dtype = dtype
        self._batch_size = batch_size
        self._workers = workers or min(8, os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"ImageEncoder({str(self.path)!r})"

    @classmethod
    def from_model(
        cls,
        model: Any,
        preprocess: Preprocess,
        *,
        tokenizer: Any | None = None,
        name: str = "in-memory",
        batch_size: int | None = None,
    ) -> ImageEncoder:
        """Wrap an already built SigLIP model (benchmarks, tests); its device and dtype are kept."""
        self = cls.__new__(cls)
        self.path = Path(name)
        self._device = None
        self._dtype = None
        self._batch_size = batch_size
        self._workers = min(8, os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._pool = None
        self._loaded = self._wrap(model, tokenizer, preprocess)
        return self

    @property
    def name(self) -> str:
        """Where the weights came from (the checkpoint path)."""
        return str(self.path)

    @property
    def dim(self) -> int:
        return self.load().dim

    @property
    def device(self) -> str:
        return str(self.load().device)

    @property
    def batch_size(self) -> int:
        if self._batch_size:
            return self._batch_size
        return 64 if self.load().device.type == "cuda" else 8

    def load(self) -> _Loaded:
        """Load model, tokenizer and preprocessing once (thread-safe); later calls return the same."""
        if self._loaded is not None:
            return self._loaded
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
        return self._loaded

    def _load(self) -> _Loaded:
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        _check_checkpoint(self.path)
        try:
            config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise EncoderLoadError(self.path, f"unreadable config.json ({exc})") from exc
        if config.model_type not in _SIGLIP_TYPES:
            raise EncoderLoadError(
                self.path, f"model_type is {config.model_type!r}, expected a SigLIP model ({_SIGLIP_TYPES})"
            )
        device = torch.device(self._device or default_device())
        if self._dtype:
            dtype = getattr(torch, self._dtype)
        else:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        try:
            model = AutoModel.from_pretrained(
                self.path, dtype=dtype, local_files_only=True, attn_implementation="sdpa"
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise EncoderLoadError(self.path, f"cannot load the weights ({exc})") from exc
        model = model.to(device).eval()
        tokenizer = None
        tokenizer_error = None
        if config.model_type == "siglip":
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            except Exception as exc:
                tokenizer_error = f"{type(exc).__name__}: {exc}"
        loaded = self._wrap(model, tokenizer, Preprocess.from_dir(self.path, self._image_size(model)))
        loaded.tokenizer_error = tokenizer_error
        return loaded

    @staticmethod
    def _image_size(model: Any) -> int:
        cfg = model.config
        vision = getattr(cfg, "vision_config", cfg)
        return int(vision.image_size)

    @staticmethod
    def _wrap(model: Any, tokenizer: Any | None, preprocess: Preprocess) -> _Loaded:
        cfg = model.config
        vision = getattr(cfg, "vision_config", cfg)
        text = getattr(cfg, "text_config", None)
        text_length = int(text.max_position_embeddings) if text is not None else 0
        tokenizer_max = int(getattr(tokenizer, "model_max_length", None) or 0)
        if tokenizer_max > 0:
            text_length = min(text_length, tokenizer_max) or text_length
        param = next(model.parameters())
        has_logits = hasattr(model, "logit_scale") and hasattr(model, "logit_bias")
        return _Loaded(
            model=model,
            vision=getattr(model, "vision_model", model),
            text=getattr(model, "text_model", None),
            tokenizer=tokenizer,
            preprocess=preprocess,
            device=param.device,
            dtype=param.dtype,
            dim=int(vision.hidden_size),
            text_length=text_length,
            logit_scale=float(model.logit_scale.detach().float().exp().item()) if has_logits else None,
            logit_bias=float(model.logit_bias.detach().float().item()) if has_logits else None,
        )

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="siglip-prep")
        return self._pool

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) float32 L2-normalised image embeddings, in batches; resizing overlaps compute."""
        import torch

        loaded = self.load()
        out = np.empty((len(images), loaded.dim), dtype=np.float32)
        if not images:
            return out
        bs = self.batch_size
        pool = self._executor()
        starts = list(range(0, len(images), bs))

        def submit(start: int) -> list[Future[np.ndarray]]:
            return [pool.submit(loaded.preprocess.resize, im) for im in images[start : start + bs]]

        pending = submit(starts[0])
        with torch.inference_mode():
            for n, start in enumerate(starts):
                batch = np.stack([f.result() for f in pending])
                if n + 1 < len(starts):
                    pending = submit(starts[n + 1])
                pixels = loaded.preprocess.to_pixels(batch, loaded.device, loaded.dtype)
                feats = loaded.vision(pixel_values=pixels).pooler_output
                feats = torch.nn.functional.normalize(feats.float(), dim=-1)
                out[start : start + len(batch)] = feats.cpu().numpy()
        return out

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 L2-normalised text embeddings (max-length padding, as SigLIP was trained)."""
        import torch

        loaded = self.load()
        if loaded.text is None:
            raise EncoderLoadError(self.path, "a vision-only checkpoint: text search is unavailable")
        if loaded.tokenizer is None:
            hint = " (SigLIP's SentencePiece tokenizer needs `pip install sentencepiece`)"
            reason = loaded.tokenizer_error or "no tokenizer files"
            raise EncoderLoadError(self.path, f"cannot load its tokenizer: {reason}{hint}")
        out = np.empty((len(texts), loaded.dim), dtype=np.float32)
        bs = max(self.batch_size, 32)
        with torch.inference_mode():
            for start in range(0, len(texts), bs):
                chunk = list(texts[start : start + bs])
                tokens = loaded.tokenizer(
                    chunk,
                    padding="max_length",
                    truncation=True,
                    max_length=loaded.text_length,
                    return_tensors="pt",
                )
                ids = tokens["input_ids"].to(loaded.device)
                feats = loaded.text(input_ids=ids).pooler_output
                feats = torch.nn.functional.normalize(feats.float(), dim=-1)
                out[start : start + len(chunk)] = feats.cpu().numpy()
        return out

    def logit_params(self) -> tuple[float, float]:
        """SigLIP's (exp(logit_scale), logit_bias): logits = scale * cosine + bias."""
        loaded = self.load()
        if loaded.logit_scale is None or loaded.logit_bias is None:
            raise EncoderLoadError(self.path, "a vision-only checkpoint has no image-text logit scale")
        return loaded.logit_scale, loaded.logit_bias

    def close(self) -> None:
        """Stop the preprocessing threads (the model stays loaded)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
