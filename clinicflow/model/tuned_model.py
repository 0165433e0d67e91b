"""The shipped tuned default: Gemma 3 270M plus the project's own LoRA adapter, merged once into the cache.

The adapter (trained by `clinicflow model train` on EHRQA gold trajectories of synthetic patients; see
`adapters/<name>/MODEL_CARD.md`) ships inside the package. On first use it is merged into the converted
base model and saved as a plain folder under `<cache_dir>/models/<name>`, which then loads like any other.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from clinicflow.model.default_model import build_once, ensure_default_model
from clinicflow.model.errors import ModelDependencyError, ModelLoadError

__all__ = [
    "BASE_MODEL_NAME",
    "TUNED_MARKER_FILE",
    "TUNED_MAX_ITEMS",
    "TUNED_MAX_STRING_LENGTH",
    "TUNED_MODEL_NAME",
    "adapter_dir",
    "ensure_tuned_model",
    "resolve_model_name",
]

TUNED_MODEL_NAME = "clinicflow-270m-ehr-v2"
BASE_MODEL_NAME = "gemma-3-270m"
TUNED_MARKER_FILE = "clinicflow-tuned.json"
TUNED_MAX_STRING_LENGTH = 256
"""Caps on the tuned model's constrained calls: wide enough for a fact line, bounded all the same."""
TUNED_MAX_ITEMS = 16


def adapter_dir(name: str = TUNED_MODEL_NAME) -> Path:
    """The packaged adapter folder."""
    return Path(str(files("clinicflow.model").joinpath("adapters", name)))


def ensure_tuned_model(cache_dir: Path, *, progress: bool = True, name: str = TUNED_MODEL_NAME) -> Path:
    """The merged base + adapter folder; converts the base and merges the adapter first if needed."""
    target = Path(cache_dir).expanduser() / "models" / name
    if (target / TUNED_MARKER_FILE).is_file():
        return target
    adapter = adapter_dir(name)
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"the packaged adapter {name} is missing from {adapter}")
    base = ensure_default_model(cache_dir, progress=progress)
    return build_once(target, TUNED_MARKER_FILE, lambda work: _merge(base, adapter, work))


def _merge(base: Path, adapter: Path, out_dir: Path) -> None:
    try:
        import peft
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelDependencyError(f"merging the tuned default needs {exc.name}: pip install peft") from exc
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base))
        merged = peft.PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"could not merge the adapter {adapter} into {base}: {exc}") from exc
    merged.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out_dir))
    (out_dir / TUNED_MARKER_FILE).write_text(
        json.dumps({"base": str(base), "adapter": adapter.name}, indent=2) + "\n"
    )


def resolve_model_name(name: str, cache_dir: Path, *, progress: bool = True) -> Path | None:
    """The folder of a built-in model name (`gemma-3-270m` base, the tuned default), else None."""
    if name == BASE_MODEL_NAME:
        return ensure_default_model(cache_dir, progress=progress)
    if name == TUNED_MODEL_NAME:
        return ensure_tuned_model(cache_dir, progress=progress)
    return None
