"""The tool-call protocol: schemas shown to the model, tolerant parsing and validation of calls."""

from __future__ import annotations

import json

import jsonschema
import llguidance
import pytest

from clinicflow.model.grammar import JSON_OPTIONS
from clinicflow.model.tool_calls import (
    ToolSpec,
    call_json_schema,
    format_call,
    max_json_bytes,
    normalize_tool_choice,
    parse_reply,
    tool_prompt,
    tool_specs,
)
from clinicflow.model.transformers_backend import constrained_budget
from tests.unit.model.tools import TOOLS, Prescription, search_record

SPECS = tool_specs(TOOLS)
NAMES = [s.name for s in SPECS]


def test_injected_arguments_are_hidden_from_the_schema() -> None:
    spec = ToolSpec.from_tool(search_record)
    assert set(spec.parameters["properties"]) == {"resource_type", "code", "date_from"}
    assert spec.parameters["required"] == ["resource_type"]
    assert "patient_id" not in json.dumps(spec.parameters)
    assert "limit" not in json.dumps(spec.parameters)


def test_tool_prompt_describes_each_tool_and_the_format() -> None:
    prompt = tool_prompt(SPECS, "any")
    assert "### search_record" in prompt and "### record_manifest" in prompt
    assert '"enum":["Observation","Condition","MedicationRequest"]' in prompt
    assert '{"name": "<tool name>", "arguments":' in prompt
    assert "You must call one of the tools now." in prompt
    assert "You must call the tool search_record now." in tool_prompt(SPECS, "search_record")
    assert tool_prompt(SPECS, "none") == ""


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, "auto"),
        ("auto", "auto"),
        ("none", "none"),
        ("any", "any"),
        ("required", "any"),
        (True, "any"),
        ("search_record", "search_record"),
        ({"type": "function", "function": {"name": "record_manifest"}}, "record_manifest"),
    ],
)
def test_tool_choice_spellings(choice: object, expected: str) -> None:
    assert normalize_tool_choice(choice, NAMES) == expected  # type: ignore[arg-type]


def test_tool_choice_naming_an_unbound_tool_is_refused() -> None:
    with pytest.raises(ValueError, match="'delete_record' is not a bound tool"):
        normalize_tool_choice("delete_record", NAMES)


def test_duplicate_tool_names_are_refused() -> None:
    with pytest.raises(ValueError, match="repeated: search_record"):
        tool_specs([search_record, search_record])


def test_a_bare_call_is_parsed_and_validated() -> None:
    reply = parse_reply(
        '{"name": "search_record", "arguments": {"resource_type": "Observation", "code": "4548-4"}}',
        SPECS,
        "any",
    )
    assert reply.invalid_tool_calls == []
    [call] = reply.tool_calls
    assert call["name"] == "search_record"
    assert call["args"] == {"resource_type": "Observation", "code": "4548-4"}
    assert call["id"] and call["id"].startswith("call_")
    assert reply.content == ""


def test_a_fenced_call_between_text_is_found_and_the_text_kept() -> None:
    text = (
        "I will look up the HbA1c.\n```json\n"
        '{"name": "search_record", "args": {"resource_type": "Observation"}}\n```\nThen I answer.'
    )
    reply = parse_reply(text, SPECS, "auto")
    assert [c["args"] for c in reply.tool_calls] == [{"resource_type": "Observation"}]
    assert reply.content == "I will look up the HbA1c.\n\nThen I answer."


def test_several_calls_and_string_arguments_are_read() -> None:
    text = json.dumps(
        [
            {"name": "record_manifest", "arguments": "{}"},
            {
                "type": "function",
                "function": {"name": "search_record", "arguments": '{"resource_type": "Condition"}'},
            },
        ]
    )
    reply = parse_reply(text, SPECS, "auto")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("record_manifest", {}),
        ("search_record", {"resource_type": "Condition"}),
    ]


def test_broken_json_becomes_an_invalid_call_with_the_parse_error() -> None:
    reply = parse_reply(
        '{"name": "search_record", "arguments": {"resource_type": "Observation"', SPECS, "any"
    )
    assert reply.tool_calls == []
    [bad] = reply.invalid_tool_calls
    assert bad["name"] == "search_record"
    assert "not valid JSON" in (bad["error"] or "")
    assert '{"name": "<tool name>", "arguments": {...}}' in (bad["error"] or "")


def test_a_truncated_reply_says_it_was_cut_off() -> None:
    reply = parse_reply('{"name": "search_record", "arguments": {"code": "1000', SPECS, "any", truncated=True)
    assert "cut off by the token limit" in (reply.invalid_tool_calls[0]["error"] or "")


def test_a_cut_constrained_call_is_reported_as_cut_even_when_an_inner_object_is_complete() -> None:
    facts = ToolSpec(
        "record_facts",
        "Record facts.",
        {
            "type": "object",
            "properties": {"facts": {"type": "array", "items": {"type": "object"}}},
            "required": ["facts"],
        },
    )
    cut = '{"name": "record_facts", "arguments": {"facts": [{"text": "a", "cites": ["Observation/x"]}, {"te'
    reply = parse_reply(cut, [facts], "record_facts", truncated=True, constrained=True)
    assert reply.tool_calls == []
    [bad] = reply.invalid_tool_calls
    assert bad["name"] == "record_facts"
    assert "cut off by the token limit before it was complete" in (bad["error"] or "")


def test_the_byte_bound_of_a_schema_is_its_longest_compact_value() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "maxLength": 3},
            "b": {"type": "integer", "minimum": -5, "maximum": 100},
            "c": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
            "d": {"type": "array", "items": {"enum": ["x", "yy"]}, "maxItems": 2},
        },
        "additionalProperties": False,
    }
    longest = {"a": "\x01\x01\x01", "b": 100, "c": False, "d": ["yy", "yy"]}
    assert max_json_bytes(schema) == len(json.dumps(longest, separators=(", ", ": ")))
    assert max_json_bytes({"type": "number"}) is None
    assert max_json_bytes({"type": "string"}) is None
    assert max_json_bytes({"type": "object", "properties": {}}) is None  # open: any key may follow


def test_a_bounded_call_schema_gets_a_budget_its_longest_call_fits_in() -> None:
    schema = call_json_schema(SPECS, max_string_length=8, max_items=4)
    bound = max_json_bytes(schema)
    assert bound is not None
    assert constrained_budget(schema, 48, room=8000) == max(48, bound + 1)
    assert constrained_budget(schema, 48, room=100) == max(48, 100)  # never past the context window
    assert constrained_budget({"type": "number"}, 48, room=8000) == 48


def test_an_unknown_tool_is_named_with_the_known_ones() -> None:
    reply = parse_reply('{"name": "delete_record", "arguments": {}}', SPECS, "auto")
    [bad] = reply.invalid_tool_calls
    assert bad["name"] == "delete_record"
    assert bad["error"] == "unknown tool 'delete_record'; the tools are: search_record, record_manifest"


def test_wrong_argument_types_are_reported_per_argument() -> None:
    reply = parse_reply(
        '{"name": "search_record", "arguments": {"resource_type": "Observations", "code": 4548}}',
        SPECS,
        "any",
    )
    [bad] = reply.invalid_tool_calls
    error = bad["error"] or ""
    assert error.startswith("invalid arguments for 'search_record': ")
    assert "argument 'code': 4548 is not of type 'string' or 'null'" in error
    assert "argument 'resource_type': 'Observations' is not one of" in error
    assert json.loads(bad["args"] or "") == {"resource_type": "Observations", "code": 4548}


def test_a_missing_required_argument_is_reported() -> None:
    reply = parse_reply('{"name": "search_record", "arguments": {"code": "4548-4"}}', SPECS, "any")
    assert "'resource_type' is a required property" in (reply.invalid_tool_calls[0]["error"] or "")


def test_a_call_to_another_tool_than_the_forced_one_is_invalid() -> None:
    reply = parse_reply('{"name": "record_manifest", "arguments": {}}', SPECS, "search_record")
    assert (
        reply.invalid_tool_calls[0]["error"] == "unknown tool 'record_manifest'; the tools are: search_record"
    )


def test_plain_text_is_an_answer_under_auto_but_an_error_when_a_call_is_required() -> None:
    answer = "The last HbA1c was 7.9 % [Observation/abc]."
    assert parse_reply(answer, SPECS, "auto").content == answer
    assert parse_reply(answer, SPECS, "auto").invalid_tool_calls == []
    forced = parse_reply(answer, SPECS, "any")
    assert forced.tool_calls == []
    assert "a tool call was required, but the reply holds none" in (
        forced.invalid_tool_calls[0]["error"] or ""
    )


def test_bare_arguments_count_as_the_call_when_one_tool_is_forced() -> None:
    reply = parse_reply('{"resource_type": "Condition"}', SPECS, "search_record")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("search_record", {"resource_type": "Condition"})
    ]


def test_json_without_a_tool_name_is_invalid_when_a_call_is_required() -> None:
    reply = parse_reply('{"resource_type": "Condition"}', SPECS, "any")
    assert 'has no "name" of a tool' in (reply.invalid_tool_calls[0]["error"] or "")


def test_json_or_citations_without_a_call_are_an_answer_under_auto() -> None:
    for text in ('{"answer": "7.9 %"}', "[Observation/abc] shows 7.9 %."):
        reply = parse_reply(text, SPECS, "auto")
        assert (reply.content, reply.tool_calls, reply.invalid_tool_calls) == (text, [], [])


def test_tool_choice_none_never_parses_calls() -> None:
    text = '{"name": "record_manifest", "arguments": {}}'
    assert parse_reply(text, SPECS, "none").content == text


def test_format_call_writes_the_protocol_format() -> None:
    assert (
        format_call("search_record", {"code": "x"}) == '{"name": "search_record", "arguments": {"code": "x"}}'
    )
    assert format_call("search_record", '{"code": ') == '{"name": "search_record", "arguments": {"code": }'


def test_call_schema_accepts_valid_calls_and_rejects_others() -> None:
    schema = call_json_schema(SPECS, max_string_length=8)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"name": "search_record", "arguments": {"resource_type": "Condition"}})
    assert validator.is_valid({"name": "record_manifest", "arguments": {}})
    assert not validator.is_valid(
        {"name": "search_record", "arguments": {"resource_type": "Condition", "x": 1}}
    )
    assert not validator.is_valid({"name": "search_record", "arguments": {"resource_type": "X"}})
    assert not validator.is_valid(
        {"name": "search_record", "arguments": {"resource_type": "Condition", "code": "123456789"}}
    )
    assert not validator.is_valid({"name": "nope", "arguments": {}})


def test_call_schema_hoists_nested_definitions() -> None:
    spec = ToolSpec("Prescription", "A medication to prescribe.", Prescription.model_json_schema())
    assert "$defs" in spec.parameters
    schema = call_json_schema([spec, *SPECS])
    assert set(schema["$defs"]) == {"Prescription__Dose"}
    validator = jsonschema.Draft202012Validator(schema)
    good = {
        "name": "Prescription",
        "arguments": {"medication": "metformin", "dose": {"value": 500, "unit": "mg"}},
    }
    assert validator.is_valid(good)
    assert not validator.is_valid(
        {**good, "arguments": {"medication": "metformin", "dose": {"value": "a lot"}}}
    )


@pytest.mark.parametrize("choice", ["any", "search_record"])
def test_call_schemas_compile_to_llguidance_grammars(choice: str) -> None:
    specs = [ToolSpec.from_tool(Prescription), *SPECS]
    allowed = specs if choice == "any" else [s for s in specs if s.name == choice]
    grammar = llguidance.LLMatcher.grammar_from_json_schema(
        json.dumps(call_json_schema(allowed, max_string_length=32)),
        overrides=JSON_OPTIONS,  # type: ignore[arg-type]
    )
    assert llguidance.LLMatcher.validate_grammar(grammar) == ""


def test_call_schema_caps_lists_when_asked() -> None:
    spec = ToolSpec.from_tool(Prescription)
    listed = ToolSpec("cite", "Cite resources.", {"type": "object", "properties": {"ids": {"type": "array"}}})
    validator = jsonschema.Draft202012Validator(call_json_schema([spec, listed], max_items=2))
    assert validator.is_valid({"name": "cite", "arguments": {"ids": ["a", "b"]}})
    assert not validator.is_valid({"name": "cite", "arguments": {"ids": ["a", "b", "c"]}})
    unbounded = jsonschema.Draft202012Validator(call_json_schema([listed]))
    assert unbounded.is_valid({"name": "cite", "arguments": {"ids": list("abcdefgh")}})
