"""Shared chat-model plumbing (`bind_tools`, structured output) and the `load_chat_model` factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel

from clinicflow.model import ModelNotFoundError, OpenAIChatModel, load_chat_model
from clinicflow.settings import Settings
from tests.unit.model.fakes import TextModel
from tests.unit.model.tools import TOOLS


def test_bound_tools_reach_the_backend_and_the_reply_is_checked() -> None:
    chat = TextModel(reply='{"name": "search_record", "arguments": {"resource_type": "Condition"}}')
    reply = chat.bind_tools(TOOLS, tool_choice="required").invoke([HumanMessage("Q")])
    assert chat.seen == [(["search_record", "record_manifest"], "any")]
    assert isinstance(reply, AIMessage)
    assert [c["args"] for c in reply.tool_calls] == [{"resource_type": "Condition"}]
    assert reply.usage_metadata == {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}
    assert reply.response_metadata["raw_text"].startswith('{"name"')


def test_without_tools_the_reply_is_plain_text() -> None:
    chat = TextModel(reply='{"name": "search_record", "arguments": {}}')
    reply = chat.invoke([HumanMessage("Q")])
    assert chat.seen == [([], "none")]
    assert reply.content == '{"name": "search_record", "arguments": {}}'
    assert reply.tool_calls == []


def test_bind_tools_refuses_an_unknown_tool_choice() -> None:
    with pytest.raises(ValueError, match="'drop_table' is not a bound tool"):
        TextModel(reply="").bind_tools(TOOLS, tool_choice="drop_table")


def test_structured_output_parses_the_forced_call() -> None:
    class Fact(BaseModel):
        """A fact with its citation."""

        text: str
        citation: str

    chat = TextModel(
        reply='{"name": "Fact", "arguments": {"text": "HbA1c 7.9 %", "citation": "Observation/a"}}', seen=[]
    )
    assert chat.with_structured_output(Fact).invoke("Q") == Fact(text="HbA1c 7.9 %", citation="Observation/a")
    assert chat.seen == [(["Fact"], "any")]


def _settings(tmp_path: Path, **fields: Any) -> Settings:
    base: dict[str, Any] = {
        "cache_dir": tmp_path,
        "model": None,
        "model_url": None,
        "model_name": "medgemma-4b-it",
        "model_api_key": "k",
        "device": "cpu",
        "max_new_tokens": 99,
    }
    return Settings(_env_file=None, **(base | fields))  # type: ignore[call-arg]


def test_a_model_url_gives_the_openai_backend(tmp_path: Path) -> None:
    chat = load_chat_model(_settings(tmp_path), model_url="http://gpu-box:8000/v1")
    assert isinstance(chat, OpenAIChatModel)
    assert (chat.endpoint, chat.model, chat.max_new_tokens) == (
        "http://gpu-box:8000/v1/chat/completions",
        "medgemma-4b-it",
        99,
    )
    assert chat.api_key is not None and chat.api_key.get_secret_value() == "k"
    assert isinstance(load_chat_model(_settings(tmp_path, model_url="http://h:1")), OpenAIChatModel)


def test_an_explicit_model_folder_beats_a_configured_url(tmp_path: Path) -> None:
    missing = tmp_path / "medgemma-27b-text-it"
    with pytest.raises(ModelNotFoundError) as info:
        load_chat_model(_settings(tmp_path, model_url="http://h:1"), model=str(missing))
    assert str(info.value) == f"model folder {missing}: does not exist"


def test_a_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        load_chat_model(_settings(tmp_path, model=str(tmp_path / "weights")))
    (tmp_path / "file.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError, match="is not a folder"):
        load_chat_model(_settings(tmp_path), model=str(tmp_path / "file.gguf"))
