"""Chat messages to Gemma 3 turns and prompt text, with tool calls and results in the protocol's format.

Gemma 3 knows only `user` and `model` turns that alternate; a system prompt is merged into the first
user turn, tool results come back as user turns and the model's own calls are shown as the JSON
objects it wrote. Transformers ships no chat template for the GGUF-converted Gemma 3, so the
project carries Gemma's own (`gemma3_chat_template.jinja`).

Image blocks (see `clinicflow.model.image_inputs`) become a placeholder sentence for text-only models,
or, given an `image_marker` (Gemma 3's `<start_of_image>`), that marker, which the multimodal
processor expands into the image's soft tokens; `image_blocks` lists the blocks in marker order.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib.resources import files
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage

from clinicflow.model.image_inputs import is_image_block
from clinicflow.model.tool_calls import format_call

__all__ = [
    "GEMMA3_CHAT_TEMPLATE",
    "IMAGE_PLACEHOLDER",
    "chat_turns",
    "image_blocks",
    "message_text",
    "render_chat",
]

GEMMA3_CHAT_TEMPLATE: str = files("clinicflow.model").joinpath("gemma3_chat_template.jinja").read_text()
IMAGE_PLACEHOLDER = "[image not shown: this model reads text only]"


def message_text(content: str | list[Any], image_marker: str | None = None) -> str:
    """The text of a message's content; image parts become `image_marker`, or else a placeholder."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
        elif is_image_block(part):
            parts.append(image_marker or IMAGE_PLACEHOLDER)
    return "\n".join(p for p in parts if p)


def image_blocks(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The image blocks of the messages in the order `chat_turns` places their markers.

    System messages come first, as `chat_turns` merges them into the first turn.
    """
    ordered: list[BaseMessage] = [m for m in messages if isinstance(m, SystemMessage)]
    ordered += [m for m in messages if not isinstance(m, SystemMessage)]
    blocks: list[dict[str, Any]] = []
    for message in ordered:
        if isinstance(message.content, list):
            blocks += [part for part in message.content if isinstance(part, dict) and is_image_block(part)]
    return blocks


def chat_turns(
    messages: Sequence[BaseMessage], tool_section: str = "", *, image_marker: str | None = None
) -> list[dict[str, str]]:
    """Alternating `system`/`user`/`assistant` dicts, as Hugging Face chat templates expect.

    `tool_section` (the tool descriptions) is appended to the system prompt. Each image block
    becomes `image_marker` when given (a multimodal model), else a placeholder sentence.
    """

    def text(content: str | list[Any]) -> str:
        return message_text(content, image_marker)

    system = [text(m.content) for m in messages if isinstance(m, SystemMessage)]
    if tool_section:
        system.append(tool_section)
    call_names: dict[str, str] = {}
    turns: list[dict[str, str]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            continue
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                call_names[call.get("id") or ""] = call["name"]
            for bad in message.invalid_tool_calls:
                call_names[bad.get("id") or ""] = bad.get("name") or "?"
            _append(turns, "assistant", _ai_text(message, text(message.content)))
        elif isinstance(message, ToolMessage):
            name = message.name or call_names.get(message.tool_call_id, "tool")
            label = "Error from" if message.status == "error" else "Result of"
            _append(turns, "user", f"{label} {name} ({message.tool_call_id}):\n{text(message.content)}")
        else:
            _append(turns, "user", text(message.content))
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": ""})
    if turns[-1]["role"] == "assistant":
        turns.append({"role": "user", "content": "Continue."})
    if system:
        turns.insert(0, {"role": "system", "content": "\n\n".join(s.strip() for s in system if s.strip())})
    return turns


def render_chat(
    turns: Sequence[dict[str, Any]],
    template: str | None = None,
    *,
    bos_token: str = "<bos>",
    add_generation_prompt: bool = True,
) -> str:
    """Prompt text from chat turns with a Hugging Face chat template (Gemma 3's by default)."""
    compiled = _compile(template or GEMMA3_CHAT_TEMPLATE)
    return compiled.render(
        messages=list(turns),
        bos_token=bos_token,
        eos_token="<eos>",
        add_generation_prompt=add_generation_prompt,
    )


def _append(turns: list[dict[str, str]], role: str, text: str) -> None:
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] = f"{turns[-1]['content']}\n\n{text}".strip()
    else:
        turns.append({"role": role, "content": text})


def _ai_text(message: AIMessage, content: str) -> str:
    parts = [content.strip()]
    parts += [format_call(c["name"], c["args"]) for c in message.tool_calls]
    for bad in message.invalid_tool_calls:
        raw = bad.get("args")
        if raw and raw not in parts[0]:
            parts.append(raw)
    return "\n".join(p for p in parts if p)


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)
