"""The tool-call protocol for models without native tool tokens (Gemma 3, MedGemma).

The bound tools are described in the system prompt (name, description, JSON schema of the arguments).
A call is ONE JSON object, and the reply holds nothing else::

    {"name": "search_record", "arguments": {"resource_type": "Observation", "code": "4548-4"}}

A reply without such an object is a plain-text answer. Parsing is tolerant: the object may sit in a
code fence or between other text, `args`/`parameters` are read as `arguments`, arguments given as a
JSON string are decoded, and several objects (or a JSON list of them) are several calls. Each call is
validated against its tool's JSON schema; a bad one becomes an `InvalidToolCall` whose `error` says
what was wrong in a sentence the model can act on.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from langchain_core.messages import InvalidToolCall, ToolCall
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

__all__ = [
    "ParsedReply",
    "ToolSpec",
    "allowed_tools",
    "call_json_schema",
    "format_call",
    "max_json_bytes",
    "normalize_tool_choice",
    "parse_reply",
    "tool_prompt",
    "tool_specs",
    "validate_call",
]

_NAME_KEYS = ("name", "tool", "tool_name", "function")
_ARG_KEYS = ("arguments", "args", "parameters", "input")
_FENCE_LEFTOVER = re.compile(r"```[A-Za-z_]*\s*```")
_LOOKS_LIKE_CALL = re.compile(r"\{|\[\s*\{")
_NAME_IN_TEXT = re.compile(r'"(?:name|tool)"\s*:\s*"([^"]+)"')
_MAX_ERRORS = 5


@dataclass(frozen=True)
class ToolSpec:
    """What the model sees of one tool: its name, description and the JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    @classmethod
    def from_tool(cls, tool: BaseTool | type | dict[str, Any] | Any) -> ToolSpec:
        """Convert a langchain tool, pydantic model, function or OpenAI tool dict (injected args hidden)."""
        function = convert_to_openai_tool(tool)["function"]
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        return cls(function["name"], (function.get("description") or "").strip(), dict(parameters))

    def openai_tool(self) -> dict[str, Any]:
        """The tool in the OpenAI `tools` format."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    @cached_property
    def _validator(self) -> Any:
        from jsonschema import Draft202012Validator

        return Draft202012Validator(self.parameters)

    def argument_errors(self, args: Mapping[str, Any]) -> list[str]:
        """Readable schema violations of `args`, at most a few, empty when they are valid."""
        errors = sorted(self._validator.iter_errors(dict(args)), key=lambda e: [str(p) for p in e.path])
        return [_describe_error(e) for e in errors[:_MAX_ERRORS]]


@dataclass
class ParsedReply:
    """A model reply split into free text, valid tool calls and invalid ones."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = field(default_factory=list)


def tool_specs(tools: Iterable[BaseTool | type | dict[str, Any] | Any]) -> list[ToolSpec]:
    """Specs for the tools to bind; raises ValueError on duplicate names."""
    specs = [t if isinstance(t, ToolSpec) else ToolSpec.from_tool(t) for t in tools]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"tool names must be unique; repeated: {', '.join(duplicates)}")
    return specs


def normalize_tool_choice(choice: str | bool | dict[str, Any] | None, names: Sequence[str]) -> str:
    """`auto`, `none`, `any` or a tool name, from the spellings langchain and OpenAI use."""
    if choice is None or choice == "auto":
        return "auto"
    if choice is False or choice == "none":
        return "none"
    if choice is True or choice in ("any", "required"):
        return "any"
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if not isinstance(name, str):
            raise ValueError(f"tool_choice {choice!r} names no tool")
        choice = name
    if isinstance(choice, str):
        if choice not in names:
            raise ValueError(
                f"tool_choice {choice!r} is not a bound tool; bound: {', '.join(names) or 'none'}"
            )
        return choice
    raise ValueError(f"tool_choice must be 'auto', 'any', 'none' or a tool name, not {choice!r}")


def allowed_tools(specs: Sequence[ToolSpec], choice: str) -> list[ToolSpec]:
    """The tools a reply may call under `choice`."""
    if choice == "none":
        return []
    if choice in ("auto", "any"):
        return list(specs)
    return [s for s in specs if s.name == choice]


def tool_prompt(specs: Sequence[ToolSpec], choice: str) -> str:
    """The system-prompt section that describes the tools and the call format."""
    if not specs or choice == "none":
        return ""
    lines = ["You can call these tools:", ""]
    for spec in specs:
        lines.append(f"### {spec.name}")
        if spec.description:
            lines.append(spec.description)
        lines.append("Arguments (JSON schema): " + json.dumps(spec.parameters, separators=(",", ":")))
        lines.append("")
    lines.append(
        "To call a tool, reply with exactly one JSON object and nothing else: "
        '{"name": "<tool name>", "arguments": {<argument>: <value>, ...}}'
    )
    if choice == "any":
        lines.append("You must call one of the tools now.")
    elif choice != "auto":
        lines.append(f"You must call the tool {choice} now.")
    else:
        lines.append("The result comes back in the next message. To answer instead, reply in plain text.")
    return "\n".join(lines)


def format_call(name: str, args: Mapping[str, Any] | str | None) -> str:
    """A call written in the protocol's own format, for showing the model its earlier calls."""
    value: Any = args
    if isinstance(args, str):
        try:
            value = json.loads(args)
        except json.JSONDecodeError:
            return json.dumps({"name": name})[:-1] + f', "arguments": {args}}}'
    return json.dumps({"name": name, "arguments": value if value is not None else {}}, ensure_ascii=False)


def call_json_schema(
    specs: Sequence[ToolSpec], *, max_string_length: int | None = None, max_items: int | None = None
) -> dict[str, Any]:
    """JSON schema of one call to any of `specs`, for grammar-constrained decoding.

    Argument objects get `additionalProperties: false` unless they say otherwise; free strings get
    `maxLength`, arrays `maxItems` and integers a `maximum` (when given) so a small model cannot run one on
    until the token budget ends.
    """
    bounds = (max_string_length, max_items)
    if not specs:
        raise ValueError("a call schema needs at least one tool")
    defs: dict[str, Any] = {}
    variants = []
    for spec in specs:
        params = copy.deepcopy(spec.parameters)
        local = {**params.pop("definitions", {}), **params.pop("$defs", {})}
        prefix = re.sub(r"[^A-Za-z0-9_]", "_", spec.name)
        renames = {name: f"{prefix}__{name}" for name in local}
        params = _rewrite_refs(params, renames)
        for name, sub in local.items():
            defs[renames[name]] = _bounded(_rewrite_refs(sub, renames), *bounds)
        variants.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": spec.name},
                    "arguments": _bounded(params, *bounds),
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = variants[0] if len(variants) == 1 else {"anyOf": variants}
    if defs:
        schema = {**schema, "$defs": defs}
    return schema


def validate_call(name: Any, args: Any, specs: Sequence[ToolSpec], choice: str) -> ToolCall | InvalidToolCall:
    """A checked call: a `ToolCall` when `name` is allowed and `args` fit its schema, else why not."""
    call_id = f"call_{uuid.uuid4().hex[:12]}"
    raw = args if isinstance(args, str) else _dumps(args)
    if not isinstance(name, str) or not name:
        return invalid_tool_call(
            name=None, args=raw, id=call_id, error=_with_format('the call has no "name"')
        )
    by_name = {s.name: s for s in specs}
    spec = by_name.get(name)
    if spec is None:
        known = ", ".join(by_name) or "none"
        return invalid_tool_call(
            name=name, args=raw, id=call_id, error=f"unknown tool {name!r}; the tools are: {known}"
        )
    if choice not in ("auto", "any", "none") and name != choice:
        return invalid_tool_call(
            name=name, args=raw, id=call_id, error=f"expected a call to {choice!r}, not {name!r}"
        )
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            return invalid_tool_call(
                name=name, args=raw, id=call_id, error=f"the arguments of {name!r} are not valid JSON: {exc}"
            )
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return invalid_tool_call(
            name=name,
            args=raw,
            id=call_id,
            error=f"the arguments of {name!r} must be a JSON object, not {type(args).__name__}",
        )
    problems = spec.argument_errors(args)
    if problems:
        return invalid_tool_call(
            name=name, args=raw, id=call_id, error=f"invalid arguments for {name!r}: " + "; ".join(problems)
        )
    return tool_call(name=name, args=args, id=call_id)


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
        return ParsedReply(
            content="",
            invalid_tool_calls=[
                invalid_tool_call(
                    name=guessed.group(1) if guessed else None,
                    args=text or None,
                    id=f"call_{uuid.uuid4().hex[:12]}",
                    error="the tool call was cut off by the token limit before it was complete; "
                    "raise max_new_tokens or shorten the arguments",
                )
            ],
        )
    found = _find_calls(text)
    if found:
        reply = ParsedReply(content=_without(text, [(start, end) for start, end, _ in found]))
        for _, _, value in found:
            for obj in value if isinstance(value, list) else [value]:
                name, args = _name_and_args(obj)
                checked = validate_call(name, args, allowed, choice)
                target = (
                    reply.invalid_tool_calls if checked["type"] == "invalid_tool_call" else reply.tool_calls
                )
                target.append(checked)  # type: ignore[arg-type]
        return reply

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
        cut = " (the reply was cut off by the token limit)" if truncated else ""
        return ParsedReply(
            content=text.strip(),
            invalid_tool_calls=[
                invalid_tool_call(
                    name=None,
                    args=None,
                    id=f"call_{uuid.uuid4().hex[:12]}",
                    error=_with_format(f"a tool call was required, but the reply holds none{cut}"),
                )
            ],
        )
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
        cut = " (the reply was cut off by the token limit)" if truncated else ""
        error = f"the tool call is not valid JSON{cut}: {exc}"
    else:
        if choice == "auto":
            return None
        if isinstance(value, dict) and len(allowed) == 1:
            return _as_reply(validate_call(allowed[0].name, value, allowed, choice))
        error = 'the JSON object has no "name" of a tool'
    return ParsedReply(
        content="",
        invalid_tool_calls=[
            invalid_tool_call(
                name=guessed.group(1) if guessed else None,
                args=text[start:] or None,
                id=f"call_{uuid.uuid4().hex[:12]}",
                error=_with_format(error),
            )
        ],
    )


def _as_reply(checked: ToolCall | InvalidToolCall) -> ParsedReply:
    if checked["type"] == "tool_call":
        return ParsedReply(content="", tool_calls=[checked])  # type: ignore[list-item]
    return ParsedReply(content="", invalid_tool_calls=[checked])  # type: ignore[list-item]


def _with_format(error: str) -> str:
    return f'{error}. Reply with one JSON object: {{"name": "<tool name>", "arguments": {{...}}}}'


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


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


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                for prefix in ("#/$defs/", "#/definitions/"):
                    if value.startswith(prefix) and value[len(prefix) :] in renames:
                        value = "#/$defs/" + renames[value[len(prefix) :]]
                out[key] = value
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


_MAX_BOUNDED_INTEGER = 10**6  # with the small-model bounds, integers cannot run on either


def _bounded(node: Any, max_string_length: int | None, max_items: int | None) -> Any:
    if isinstance(node, list):
        return [_bounded(v, max_string_length, max_items) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _bounded(v, max_string_length, max_items) for k, v in node.items()}
    if "properties" in out and out.get("type", "object") == "object":
        out.setdefault("additionalProperties", False)
    free_string = out.get("type") == "string" and not {"enum", "const", "pattern", "format"} & out.keys()
    if max_string_length and free_string:
        out.setdefault("maxLength", max_string_length)
    if max_items and out.get("type") == "array":
        out.setdefault("maxItems", max_items)
    if max_string_length and out.get("type") == "integer" and "enum" not in out:
        out.setdefault("maximum", _MAX_BOUNDED_INTEGER)
        out.setdefault("minimum", -_MAX_BOUNDED_INTEGER)
    return out


_ESCAPED_CHAR_BYTES = 6  # the longest JSON spelling of one character: \uXXXX
_FORMAT_BYTES = {"date": 10, "uuid": 36}


def max_json_bytes(schema: dict[str, Any]) -> int | None:
    """An upper bound on the bytes of any compact JSON value `schema` admits (", " and ": " separators),
    hence on the tokens a constrained reply takes; None when some part is unbounded (a number, a string
    without maxLength, an open object, a recursive reference)."""
    return _max_bytes(schema, schema.get("$defs", {}), frozenset())


def _max_bytes(node: Any, defs: dict[str, Any], seen: frozenset[str]) -> int | None:
    if node is True or not isinstance(node, dict):
        return None
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        if name in seen or name not in defs:
            return None
        return _max_bytes(defs[name], defs, seen | {name})
    if "const" in node:
        return len(json.dumps(node["const"]))
    if "enum" in node:
        return max(len(json.dumps(v)) for v in node["enum"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            sizes = [_max_bytes(branch, defs, seen) for branch in node[key]]
            return None if any(size is None for size in sizes) else max(s for s in sizes if s is not None)
    kinds = node.get("type")
    if isinstance(kinds, list):
        sizes = [_max_bytes({**node, "type": kind}, defs, seen) for kind in kinds]
        return None if any(size is None for size in sizes) else max(s for s in sizes if s is not None)
    if kinds == "null":
        return 4
    if kinds == "boolean":
        return 5
    if kinds == "integer":
        low, high = node.get("minimum"), node.get("maximum")
        if low is None or high is None:
            return None
        return max(len(str(int(low))), len(str(int(high))))
    if kinds == "string":
        if "format" in node and "maxLength" not in node:
            size = _FORMAT_BYTES.get(node["format"])
            return None if size is None else size + 2
        if "pattern" in node or "maxLength" not in node:
            return None
        return 2 + _ESCAPED_CHAR_BYTES * int(node["maxLength"])
    if kinds == "array":
        item = _max_bytes(node.get("items", True), defs, seen)
        if item is None or "maxItems" not in node:
            return None
        count = int(node["maxItems"])
        return 2 + count * item + max(count - 1, 0) * 2
    if kinds == "object" or "properties" in node:
        if node.get("additionalProperties", True) is not False:
            return None
        properties = node.get("properties", {})
        fields = []
        for name, sub in properties.items():
            size = _max_bytes(sub, defs, seen)
            if size is None:
                return None
            fields.append(len(json.dumps(name)) + 2 + size)  # "name": value
        return 2 + sum(fields) + max(len(fields) - 1, 0) * 2
    return None


def _describe_error(error: Any) -> str:
    where = "".join(
        f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(error.path)
    )
    if error.validator in ("anyOf", "oneOf") and error.context:
        types = [c.validator_value for c in error.context if c.validator == "type"]
        if len(types) == len(error.context):
            names = " or ".join(repr(t) for t in dict.fromkeys(str(t) for t in types))
            message = f"{error.instance!r} is not of type {names}"
        else:
            message = "; ".join(dict.fromkeys(c.message for c in error.context))
    else:
        message = error.message
    return f"argument {where!r}: {message}" if where else message
