"""The JSON schema of one tool call, for grammar-constrained decoding, and a bound on its size.

`call_json_schema` joins the bound tools' argument schemas into the schema of one call object and
bounds what a small model could otherwise run on with; `max_json_bytes` bounds the bytes (so the
tokens) of any value a schema admits, so a constrained reply gets a budget it can finish in.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from clinicflow.model.tool_specs import ToolSpec

__all__ = ["call_json_schema", "max_json_bytes"]


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
