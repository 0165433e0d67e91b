"""`load_chat_model`: the chat model the settings ask for, on the backend they name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clinicflow.model.base import PromptToolChatModel
from clinicflow.model.default_model import (
    DEFAULT_MODEL_MAX_ITEMS,
    DEFAULT_MODEL_MAX_STRING_LENGTH,
    MARKER_FILE,
)
from clinicflow.model.openai_backend import OpenAIChatModel
from clinicflow.model.transformers_backend import TransformersChatModel, check_model_folder
from clinicflow.model.tuned_model import (
    TUNED_MARKER_FILE,
    TUNED_MAX_ITEMS,
    TUNED_MAX_STRING_LENGTH,
    ensure_tuned_model,
    resolve_model_name,
)

if TYPE_CHECKING:
    from clinicflow.settings import Settings

__all__ = ["load_chat_model"]


def load_chat_model(
    settings: Settings,
    *,
    model: str | None = None,
    model_url: str | None = None,
    progress: bool = True,
) -> PromptToolChatModel:
    """The chat model the settings (or the explicit `model` / `model_url`) ask for, ready to call.

    Precedence: `model_url`, then `model`, then `settings.model_url`, then `settings.model`, then the
    tuned default (Gemma 3 270M + the shipped adapter, `clinicflow-270m-ehr-v2`). `model` may also name a
    built-in: `gemma-3-270m` is the base model (strings in its constrained calls capped at 32 characters,
    lists at 4 items, also when its converted folder is passed explicitly).
    Optional settings `model_quantization`, `model_fast_path`, `model_decode`, `model_max_batch` and
    `model_cpu_threads`
    tune the local backend when present.
    A local model is loaded here (once per process), so a bad folder fails now with a
    `ModelNotFoundError` / `ModelLoadError` naming the path.
    """
    url = model_url or (None if model else settings.model_url)
    if url:
        api_key = settings.model_api_key
        return OpenAIChatModel(
            base_url=url,
            model=settings.model_name,
            api_key=api_key,  # type: ignore[arg-type]
            max_new_tokens=settings.max_new_tokens,
        )
    path = model or settings.model
    tuning = {
        key: getattr(settings, f"model_{key}")
        for key in ("quantization", "fast_path", "decode", "max_batch", "cpu_threads")
        if getattr(settings, f"model_{key}", None) is not None
    }
    if not path:
        folder = ensure_tuned_model(settings.cache_dir, progress=progress)
    else:
        folder = resolve_model_name(path, settings.cache_dir, progress=progress) or check_model_folder(path)
    caps: dict[str, Any] = {}
    if (folder / MARKER_FILE).is_file():
        caps = {
            "max_string_length": DEFAULT_MODEL_MAX_STRING_LENGTH,
            "max_array_items": DEFAULT_MODEL_MAX_ITEMS,
        }
    elif (folder / TUNED_MARKER_FILE).is_file():
        caps = {"max_string_length": TUNED_MAX_STRING_LENGTH, "max_array_items": TUNED_MAX_ITEMS}
    chat = TransformersChatModel(
        model_path=str(folder),
        device=settings.device,
        max_new_tokens=settings.max_new_tokens,
        **caps,
        **tuning,
    )
    chat.load()
    return chat
