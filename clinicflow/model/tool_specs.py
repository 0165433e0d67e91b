"""The tools a model is offered and the checking of one call to them.

A `ToolSpec` is what the model sees of a tool (name, description, JSON schema of its arguments);
`tool_choice` is normalized to `auto`, `none`, `any` or a tool name. `validate_call` turns a name and
arguments into a `ToolCall`, or into an `InvalidToolCall` whose `error` says what was wrong in a
sentence the model can act on.
"""

from __future__ import annotations

import json
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
    "ToolSpec",
    "allowed_tools",
    "new_call_id",
    "normalize_tool_choice",
    "tool_specs",
    "validate_call",
    "with_format_hint",
]

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


def new_call_id() -> str:
    """A fresh id for a call the reply did not name."""
    return f"call_{uuid.uuid4().hex[:12]}"


def with_format_hint(error: str) -> str:
    """An error about a reply's form, followed by the call format the model should use."""
    return f'{error}. Reply with one JSON object: {{"name": "<tool name>", "arguments": {{...}}}}'


def validate_call(name: Any, args: Any, specs: Sequence[ToolSpec], choice: str) -> ToolCall | InvalidToolCall:
    """A checked call: a `ToolCall` when `name` is allowed and `args` fit its schema, else why not."""
    call_id = new_call_id()
    raw = args if isinstance(args, str) else _dumps(args)
    if not isinstance(name, str) or not name:
        return invalid_tool_call(
            name=None, args=raw, id=call_id, error=with_format_hint('the call has no "name"')
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


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


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
