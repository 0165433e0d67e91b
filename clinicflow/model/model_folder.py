"""A Hugging Face model folder in memory: checked, loaded once per process and shared (`LoadedModel`).

A folder loads with transformers on CUDA when present, else the CPU (optionally int8-quantized). A
Gemma 3 multimodal folder (config `model_type` `gemma3` with a `vision_config`, as MedGemma 4B-it)
loads with the image-text-to-text auto class and its `AutoProcessor`, which expands each image
marker of a prompt into the image's soft tokens. Requests reach the model through its
`BatchScheduler` (see `clinicflow.model.batching`), which runs them in batches through
`clinicflow.model.engine`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from clinicflow.model.batching import BatchScheduler, GenerationOutput, GenerationRequest
from clinicflow.model.engine_options import EngineOptions, Quantization, default_dtype
from clinicflow.model.errors import ModelDependencyError, ModelInputError, ModelLoadError, ModelNotFoundError
from clinicflow.model.prompting import GEMMA3_CHAT_TEMPLATE

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["LoadedModel", "backend_module", "check_model_folder", "load_model_folder"]

_END_OF_TURN = "<end_of_turn>"
_cache: dict[tuple[Any, ...], LoadedModel] = {}
_cache_lock = threading.Lock()


@dataclass
class LoadedModel:
    """A model and tokenizer (and processor, if multimodal) in memory, shared by every chat model on it."""

    path: str
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    stop_ids: list[int]
    pad_id: int
    chat_template: str
    bos_token: str
    load_s: float
    context_length: int = 8192
    """Longest prompt plus reply the model takes, in tokens."""
    quantization: Quantization = "none"
    options: EngineOptions = field(default_factory=EngineOptions)
    processor: Any = None
    """The Gemma 3 processor of a multimodal folder; None for a text-only model."""
    image_token_id: int | None = None
    """Id of the image soft token the processor puts in the prompt (multimodal only)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Held while the model runs a batch."""
    _ll_tokenizer: Any = field(default=None, repr=False)
    _ll_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _schedulers: dict[tuple[int, float], BatchScheduler] = field(default_factory=dict, repr=False)

    def scheduler(self, *, max_batch: int = 64, window_s: float = 0.005) -> BatchScheduler:
        """The batch scheduler of this model for these settings, started on first use.

        One per (max_batch, window): a caller with a long window never holds up another's requests.
        """
        with self._ll_lock:
            key = (max_batch, window_s)
            if key not in self._schedulers:
                self._schedulers[key] = BatchScheduler(self.run_batch, max_batch=max_batch, window_s=window_s)
            return self._schedulers[key]

    def run_batch(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        """Generate one group of compatible requests together (what the scheduler calls)."""
        from clinicflow.model.engine import generate_batch

        with self.lock:
            return generate_batch(self, requests)

    def encode(self, prompt: str, images: Sequence[Image.Image] = ()) -> tuple[list[int], Any]:
        """Prompt token ids and, with images, their pixel values (the processor expands each marker)."""
        if not images:
            ids: list[int] = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            pixel_values = None
        else:
            try:
                inputs = self.processor(
                    text=prompt, images=[list(images)], return_tensors="pt", add_special_tokens=False
                )
            except ValueError as exc:
                raise ModelInputError(
                    f"the prompt's image markers do not match the number of images ({len(images)}); "
                    f"is {self.processor.boi_token} written in the message text? {exc}"
                ) from exc
            ids = inputs["input_ids"][0].tolist()
            pixel_values = inputs["pixel_values"]
        if self.image_token_id is not None:
            expected = 0 if pixel_values is None else len(pixel_values) * self.processor.image_seq_length
            if ids.count(self.image_token_id) != expected:
                raise ModelInputError(
                    "the message text holds image soft tokens of its own; remove "
                    f"{self.tokenizer.convert_ids_to_tokens(self.image_token_id)} from it"
                )
        return ids, pixel_values

    def ll_tokenizer(self) -> Any:
        """The llguidance tokenizer, built once on first use (it takes seconds)."""
        with self._ll_lock:
            if self._ll_tokenizer is None:
                from clinicflow.model.grammar import make_ll_tokenizer

                vocab = max(int(self.model.config.get_text_config().vocab_size), len(self.tokenizer))
                self._ll_tokenizer = make_ll_tokenizer(self.tokenizer, n_vocab=vocab, stop_ids=self.stop_ids)
            return self._ll_tokenizer


def check_model_folder(path: str | Path) -> Path:
    """The folder as an absolute path; raises ModelNotFoundError unless it holds a Hugging Face model."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelNotFoundError(str(folder), "does not exist")
    if not folder.is_dir():
        raise ModelNotFoundError(str(folder), "is not a folder (pass a Hugging Face model folder)")
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(str(folder), "has no config.json, so it is not a Hugging Face model folder")
    return folder.resolve()


def load_model_folder(
    path: str | Path,
    *,
    device: str | None = None,
    dtype: str = "auto",
    shared: bool = True,
    quantization: Quantization = "none",
    fast_path: Literal["auto", "on", "off"] = "auto",
    decode: Literal["generate", "own"] = "generate",
) -> LoadedModel:
    """Load a model folder, or return the copy this process already loaded with the same settings.

    `quantization` (CPU only) is int8 dynamic quantization of every Linear (`int8`) or of the output
    head (`int8-head`); `fast_path` `auto` takes the static-cache / compiled path on CUDA only;
    `decode="own"` decodes in clinicflow's own loop (Gemma 3 text models; see `EngineOptions`).
    `shared=False` always loads a private copy.
    """
    folder = check_model_folder(path)
    torch = backend_module("torch")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = default_dtype(device)
    if quantization != "none" and device != "cpu":
        raise ValueError(f"int8 dynamic quantization runs on the CPU only, not on {device}")
    options = EngineOptions.for_device(device, fast_path, decode)
    if not shared:
        return _load(folder, device, dtype, quantization, options)
    key = (str(folder), device, dtype, quantization, options)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _load(folder, device, dtype, quantization, options)
        return _cache[key]


def backend_module(name: str) -> Any:
    """The package `name` (torch, transformers); raises ModelDependencyError with an install hint."""
    try:
        return __import__(name)
    except ImportError as exc:
        raise ModelDependencyError(
            f"the transformers backend needs {name}: pip install torch transformers accelerate llguidance"
        ) from exc


def _load(
    folder: Path, device: str, dtype: str, quantization: Quantization, options: EngineOptions
) -> LoadedModel:
    torch = backend_module("torch")
    backend_module("transformers")
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    started = time.perf_counter()
    processor = None
    try:
        multimodal = _is_gemma3_multimodal(AutoConfig.from_pretrained(str(folder)))
        if multimodal:
            processor = AutoProcessor.from_pretrained(str(folder))
            tokenizer = processor.tokenizer
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        auto_class = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
        model = auto_class.from_pretrained(
            str(folder),
            dtype=getattr(torch, dtype),
            device_map=device if device.startswith("cuda") else None,
        )
    except Exception as exc:
        raise ModelLoadError(f"could not load the model in {folder}: {exc}") from exc
    if processor is not None:
        _check_processor(folder, processor, model.config)
    if not device.startswith("cuda"):
        model = model.to(device)  # type: ignore[arg-type]
    model.eval()
    if quantization != "none":
        from clinicflow.model.engine import quantize_for_cpu

        model = quantize_for_cpu(model, quantization)
    text_config = model.config.get_text_config()
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else GEMMA3_CHAT_TEMPLATE
    return LoadedModel(
        path=str(folder),
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        stop_ids=_stop_ids(model, tokenizer),
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        chat_template=template,
        bos_token=tokenizer.bos_token or "",
        load_s=round(time.perf_counter() - started, 2),
        context_length=int(getattr(text_config, "max_position_embeddings", None) or 8192),
        quantization=quantization,
        options=options,
        processor=processor,
        image_token_id=model.config.image_token_id if processor is not None else None,
    )


def _is_gemma3_multimodal(config: Any) -> bool:
    """True for a Gemma 3 image-text config (MedGemma 4B-it), not for a text-only Gemma 3."""
    is_gemma3 = getattr(config, "model_type", None) == "gemma3"
    return is_gemma3 and getattr(config, "vision_config", None) is not None


def _check_processor(folder: Path, processor: Any, config: Any) -> None:
    """Raise ModelLoadError unless the processor writes the image tokens the model replaces."""
    if not getattr(processor, "boi_token", None) or not getattr(processor, "image_seq_length", None):
        raise ModelLoadError(
            f"the Gemma 3 multimodal model in {folder} needs a Gemma 3 processor, not "
            f"{type(processor).__name__}; add its processor and preprocessor config files"
        )
    token_id = processor.tokenizer.image_token_id
    if token_id != config.image_token_id or processor.image_seq_length != config.mm_tokens_per_image:
        raise ModelLoadError(
            f"the processor and the model in {folder} disagree on images: image token {token_id} and "
            f"{processor.image_seq_length} tokens per image vs the model's {config.image_token_id} and "
            f"{config.mm_tokens_per_image}"
        )


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = list(configured) if isinstance(configured, list | tuple) else [configured]
    ids.append(tokenizer.eos_token_id)
    end_of_turn = tokenizer.convert_tokens_to_ids(_END_OF_TURN)
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.append(end_of_turn)
    return sorted({i for i in ids if isinstance(i, int)})
