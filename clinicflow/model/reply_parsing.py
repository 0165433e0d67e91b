"""Reading tool calls out of a model's reply text, tolerantly.

The object may sit in a code fence or between other text, `args`/`parameters` are read as
`arguments`, arguments given as a JSON string are decoded, and several objects (or a JSON list of
them) are several calls. Each call is checked by `validate_call`; a reply that looks like a call but
holds none, or holds none where one was required, becomes an `InvalidToolCall` that says why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import InvalidToolCall, ToolCall
from langchain_core.messages.tool import invalid_tool_call

from clinicflow.model.tool_specs import ToolSpec, allowed_tools, new_call_id, validate_call, with_format_hint

__all__ = ["ParsedReply", "parse_reply"]

_NAME_KEYS = ("name", "tool", "tool_name", "function")
_ARG_KEYS = ("arguments", "args", "parameters", "input")
_FENCE_LEFTOVER = re.compile(r"```[A-Za-z_]*\s*```")
_LOOKS_LIKE_CALL = re.compile(r"\{|\[\s*\{")
_NAME_IN_TEXT = re.compile(r'"(?:name|tool)"\s*:\s*"([^"]+)"')
_CUT = " (the reply was cut off by the token limit)"


@dataclass
class ParsedReply:
    """A model reply split into free text, valid tool calls and invalid ones."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = field(default_factory=list)


def parse_reply(
    text: str,
    specs: Sequence[ToolSpec],
    choice: str = "auto",
    *,
    truncated: bool = False,
    constrained: bool = False,
) -> ParsedReply:
    """Split a model's text into content and checked tool calls, tolerating fences and stray text.

    `truncated` says the reply was cut off by the token limit, which is named in the error.
    `constrained` says the reply was decoded under the call grammar: cut off before its JSON closed, it
    is reported as a cut call, never searched for a call (a complete inner object is not the call).
    """
    if not specs or choice == "none":
        return ParsedReply(content=text.strip())
    allowed = allowed_tools(specs, choice)
    if constrained and truncated and not _is_one_json_value(text):
        guessed = _NAME_IN_TEXT.search(text)
        error = "the tool call was cut off by the token limit before it was complete; "
        error += "raise max_new_tokens or shorten the arguments"
        return _invalid(guessed.group(1) if guessed else None, text or None, error, content="")
    found = _find_calls(text)
    if found:
        return _checked_calls(text, found, allowed, choice)
    return _without_call(text, allowed, choice, truncated=truncated)


def _checked_calls(
    text: str, found: list[tuple[int, int, Any]], allowed: Sequence[ToolSpec], choice: str
) -> ParsedReply:
    """The reply with each call found in it checked, and the rest of its text as content."""
    reply = ParsedReply(content=_without(text, [(start, end) for start, end, _ in found]))
    for _, _, value in found:
        for obj in value if isinstance(value, list) else [value]:
            name, args = _name_and_args(obj)
            checked = validate_call(name, args, allowed, choice)
            target = reply.invalid_tool_calls if checked["type"] == "invalid_tool_call" else reply.tool_calls
            target.append(checked)  # type: ignore[arg-type]
    return reply


def _without_call(text: str, allowed: Sequence[ToolSpec], choice: str, *, truncated: bool) -> ParsedReply:
    """A reply holding no call object: an answer, a failed attempt at a call, or a bare argument object."""
    forced = choice != "auto"
    stripped = _FENCE_LEFTOVER.sub("", text.replace("```json", "```")).strip().strip("`").strip()
    if _LOOKS_LIKE_CALL.match(stripped) or _NAME_IN_TEXT.search(stripped):
        attempted = _attempted_call(stripped, allowed, choice, truncated=truncated)
        if attempted is not None:
            return attempted
    if forced and len(allowed) == 1:
        bare = next((v for _, _, v in _find_json(text) if isinstance(v, dict)), None)
        if bare is not None:
            return _as_reply(validate_call(allowed[0].name, bare, allowed, choice))
    if forced:
        cut = _CUT if truncated else ""
        error = with_format_hint(f"a tool call was required, but the reply holds none{cut}")
        return _invalid(None, None, error, content=text.strip())
    return ParsedReply(content=text.strip())


def _is_one_json_value(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _attempted_call(
    text: str, allowed: Sequence[ToolSpec], choice: str, *, truncated: bool
) -> ParsedReply | None:
    """What went wrong with a reply that looks like a call but held none; None for a JSON answer."""
    start = min(i for i in (text.find("{"), text.find("["), len(text)) if i >= 0)
    guessed = _NAME_IN_TEXT.search(text)
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as exc:
        cut = _CUT if truncated else ""
        error = f"the tool call is not valid JSON{cut}: {exc}"
    else:
        if choice == "auto":
            return None
        if isinstance(value, dict) and len(allowed) == 1:
            return _as_reply(validate_call(allowed[0].name, value, allowed, choice))
        error = 'the JSON object has no "name" of a tool'
    return _invalid(guessed.group(1) if guessed else None, text[start:] or None, with_format_hint(error))


def _invalid(name: str | None, args: str | None, error: str, *, content: str = "") -> ParsedReply:
    """A reply whose one call is invalid for `error`."""
    call = invalid_tool_call(name=name, args=args, id=new_call_id(), error=error)
    return ParsedReply(content=content, invalid_tool_calls=[call])


def _as_reply(checked: ToolCall | InvalidToolCall) -> ParsedReply:
    if checked["type"] == "tool_call":
        return ParsedReply(content="", tool_calls=[checked])  # type: ignore[list-item]
    return ParsedReply(content="", invalid_tool_calls=[checked])  # type: ignore[list-item]


def _is_call(value: Any) -> bool:
    if isinstance(value, dict):
        return any(isinstance(value.get(k), str | dict) for k in _NAME_KEYS)
    return isinstance(value, list) and bool(value) and all(_is_call(v) for v in value)


def _find_json(text: str) -> list[tuple[int, int, Any]]:
    """Every top-level JSON object or list in `text`, as (start, end, value)."""
    decoder = json.JSONDecoder()
    found: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(text):
        if text[i] not in "{[":
            i += 1
            continue
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        found.append((i, end, value))
        i = end
    return found


def _find_calls(text: str) -> list[tuple[int, int, Any]]:
    """The JSON values in `text` that look like calls."""
    return [(start, end, value) for start, end, value in _find_json(text) if _is_call(value)]


def _name_and_args(obj: dict[str, Any]) -> tuple[Any, Any]:
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    args = next((obj[k] for k in _ARG_KEYS if k in obj), None)
    return name, args


def _without(text: str, spans: Sequence[tuple[int, int]]) -> str:
    kept, last = [], 0
    for start, end in spans:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    return _FENCE_LEFTOVER.sub("", "".join(kept)).strip()
