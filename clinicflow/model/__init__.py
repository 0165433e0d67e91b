"""Model hosting: one langchain-core chat-model interface over local (transformers) and HTTP backends.

`load_chat_model(settings)` picks the backend: an OpenAI-compatible URL, else a local model folder,
else the CPU default Gemma 3 270M (converted once into the cache dir). Tools are bound with
`bind_tools(tools, tool_choice=...)`; replies carry validated `tool_calls` or `invalid_tool_calls`
with the error, and `usage_metadata` with token counts. Messages may carry images (a local file, a
data URL or a FHIR Attachment; see `clinicflow.model.image_inputs`) for a Gemma 3 multimodal model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clinicflow.model import errors
from clinicflow.model.errors import *  # noqa: F403  (the errors import nothing; each is a public name here)

if TYPE_CHECKING:
    from clinicflow.model.base import PromptToolChatModel
    from clinicflow.model.default_model import default_model_dir, ensure_default_model
    from clinicflow.model.loading import load_chat_model
    from clinicflow.model.openai_backend import OpenAIChatModel
    from clinicflow.model.tool_calls import ParsedReply, ToolSpec, parse_reply
    from clinicflow.model.transformers_backend import TransformersChatModel

# Every other name is imported from its module on first use, so the generation engine
# (`clinicflow.model.engine`, torch and transformers only) imports on a bare GPU box.
_HOMES = {
    "OpenAIChatModel": "openai_backend",
    "ParsedReply": "tool_calls",
    "PromptToolChatModel": "base",
    "ToolSpec": "tool_calls",
    "TransformersChatModel": "transformers_backend",
    "default_model_dir": "default_model",
    "ensure_default_model": "default_model",
    "load_chat_model": "loading",
    "parse_reply": "tool_calls",
}

__all__ = [
    *errors.__all__,
    "OpenAIChatModel",
    "ParsedReply",
    "PromptToolChatModel",
    "ToolSpec",
    "TransformersChatModel",
    "default_model_dir",
    "ensure_default_model",
    "load_chat_model",
    "parse_reply",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
