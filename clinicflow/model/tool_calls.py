"""The tool-call protocol for models without native tool tokens (Gemma 3, MedGemma).

The bound tools are described in the system prompt (name, description, JSON schema of the arguments).
A call is ONE JSON object, and the reply holds nothing else::

    {"name": "search_record", "arguments": {"resource_type": "Observation", "code": "4548-4"}}

A reply without such an object is a plain-text answer. This module writes the protocol: the prompt
section (`tool_prompt`) and a call in its format (`format_call`). Its other parts live beside it:
the tools and the checking of a call (`tool_specs`), reading calls out of a reply (`reply_parsing`)
and the schema of a call for constrained decoding (`call_schema`); their names are importable here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from clinicflow.model.call_schema import call_json_schema, max_json_bytes
from clinicflow.model.reply_parsing import ParsedReply, parse_reply
from clinicflow.model.tool_specs import (
    ToolSpec,
    allowed_tools,
    normalize_tool_choice,
    tool_specs,
    validate_call,
)

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
