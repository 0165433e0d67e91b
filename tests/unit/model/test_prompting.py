"""Chat messages to Gemma 3 turns and prompt text."""

from __future__ import annotations

import pytest
from jinja2.exceptions import TemplateError
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from clinicflow.model.prompting import IMAGE_PLACEHOLDER, chat_turns, image_blocks, render_chat


def test_system_prompt_is_merged_into_the_first_user_turn() -> None:
    prompt = render_chat(chat_turns([SystemMessage("You read health records."), HumanMessage("Last HbA1c?")]))
    assert prompt == (
        "<bos><start_of_turn>user\nYou read health records.\n\nLast HbA1c?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_without_a_system_prompt_and_without_a_generation_prompt() -> None:
    prompt = render_chat(chat_turns([HumanMessage("Hi")]), add_generation_prompt=False)
    assert prompt == "<bos><start_of_turn>user\nHi<end_of_turn>\n"


def test_tool_section_joins_the_system_prompt() -> None:
    turns = chat_turns([SystemMessage("Role."), HumanMessage("Q")], tool_section="You can call these tools:")
    assert turns[0] == {"role": "system", "content": "Role.\n\nYou can call these tools:"}


def test_tool_calls_and_results_alternate_as_model_and_user_turns() -> None:
    messages = [
        SystemMessage("Role."),
        HumanMessage("Last HbA1c?"),
        AIMessage(
            content="",
            tool_calls=[{"name": "search_record", "args": {"resource_type": "Observation"}, "id": "call_1"}],
        ),
        ToolMessage("2023-04-02 HbA1c 7.9 % [Observation/abc]", tool_call_id="call_1"),
        ToolMessage("nothing", tool_call_id="call_2", name="record_manifest", status="error"),
    ]
    prompt = render_chat(chat_turns(messages))
    assert prompt == (
        "<bos><start_of_turn>user\nRole.\n\nLast HbA1c?<end_of_turn>\n"
        '<start_of_turn>model\n{"name": "search_record", "arguments": {"resource_type": "Observation"}}'
        "<end_of_turn>\n"
        "<start_of_turn>user\nResult of search_record (call_1):\n2023-04-02 HbA1c 7.9 % [Observation/abc]\n\n"
        "Error from record_manifest (call_2):\nnothing<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_an_invalid_call_is_shown_back_as_the_model_wrote_it() -> None:
    bad = AIMessage(
        content="",
        invalid_tool_calls=[{"name": "search_record", "args": '{"code": 5', "id": "c", "error": "bad"}],
    )
    turns = chat_turns([HumanMessage("Q"), bad, HumanMessage("That was not valid JSON.")])
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == '{"code": 5'


def test_conversation_starting_or_ending_with_the_model_still_alternates() -> None:
    turns = chat_turns([AIMessage("Hello."), AIMessage("How can I help?")])
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == "Hello.\n\nHow can I help?"
    render_chat(turns)


def test_image_parts_become_a_placeholder_for_text_models() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:,"}},
    ]
    turns = chat_turns([HumanMessage(content=content)])  # type: ignore[arg-type]
    assert turns[0]["content"] == f"What is this?\n{IMAGE_PLACEHOLDER}"


def test_images_become_markers_in_the_order_image_blocks_lists_them() -> None:
    def image(name: str) -> dict[str, object]:
        return {"type": "image_url", "image_url": {"url": f"/scans/{name}.png"}}

    messages = [
        HumanMessage(content=[{"type": "text", "text": "Compare:"}, image("a"), image("b")]),  # type: ignore[list-item]
        SystemMessage(content=[{"type": "text", "text": "Reference:"}, image("ref")]),  # type: ignore[list-item]
        AIMessage(content="", tool_calls=[{"name": "search_images", "args": {}, "id": "c1"}]),
        ToolMessage(content=[{"type": "text", "text": "Found:"}, image("found")], tool_call_id="c1"),  # type: ignore[list-item]
    ]
    prompt = render_chat(chat_turns(messages, image_marker="<start_of_image>"))
    assert prompt == (
        "<bos><start_of_turn>user\nReference:\n<start_of_image>\n\nCompare:\n<start_of_image>\n"
        '<start_of_image><end_of_turn>\n<start_of_turn>model\n{"name": "search_images", "arguments": {}}'
        "<end_of_turn>\n<start_of_turn>user\nResult of search_images (c1):\nFound:\n<start_of_image>"
        "<end_of_turn>\n<start_of_turn>model\n"
    )
    assert [b["image_url"]["url"] for b in image_blocks(messages)] == [  # type: ignore[index]
        "/scans/ref.png",
        "/scans/a.png",
        "/scans/b.png",
        "/scans/found.png",
    ]


def test_the_template_refuses_turns_that_do_not_alternate() -> None:
    with pytest.raises(TemplateError, match="alternate"):
        render_chat([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
