"""The OpenAI-compatible backend against `httpx.MockTransport`, and against a closed port."""

from __future__ import annotations

import io
import json
import socket
from base64 import b64decode, b64encode
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from PIL import Image
from pydantic import BaseModel

from clinicflow.model import (
    ModelConnectionError,
    ModelInputError,
    ModelResponseError,
    ModelTimeoutError,
    OpenAIChatModel,
)
from clinicflow.model.openai_backend import chat_completions_url
from tests.unit.model.tools import TOOLS

URL = "http://model.test/v1"
MESSAGES = [SystemMessage("You read health records."), HumanMessage("Last HbA1c?")]


def completion(message: dict[str, Any], finish_reason: str = "stop", usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "cmpl-1",
        "model": "medgemma-27b-text-it",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
    return body


class Server:
    """Answers each request with the next scripted (status, body) and records the payloads."""

    def __init__(self, *replies: tuple[int, dict[str, Any]]) -> None:
        self.replies = list(replies)
        self.payloads: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url == f"{URL}/chat/completions"
        self.payloads.append(json.loads(request.content))
        self.headers.append(request.headers)
        status, body = self.replies.pop(0)
        return httpx.Response(status, json=body)


def model(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> OpenAIChatModel:
    return OpenAIChatModel(base_url=URL, transport=httpx.MockTransport(handler), **kwargs)


def native_call(name: str, arguments: str, call_id: str = "srv_1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_endpoint_from_base_urls() -> None:
    assert chat_completions_url("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert chat_completions_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_completions_url("http://h/api/v1") == "http://h/api/v1/chat/completions"
    assert chat_completions_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"


def test_native_tool_calls_are_sent_and_validated() -> None:
    server = Server(
        (
            200,
            completion(
                {
                    "content": None,
                    "tool_calls": [native_call("search_record", '{"resource_type": "Condition"}')],
                }
            ),
        )
    )
    chat = model(server, api_key="secret", max_new_tokens=64)
    reply = chat.bind_tools(TOOLS, tool_choice="any").invoke(MESSAGES)
    payload = server.payloads[0]
    assert payload["tool_choice"] == "required"
    assert [t["function"]["name"] for t in payload["tools"]] == ["search_record", "record_manifest"]
    assert "patient_id" not in json.dumps(payload["tools"])
    assert payload["max_tokens"] == 64 and payload["temperature"] == 0.0
    assert payload["messages"][0] == {"role": "system", "content": "You read health records."}
    assert server.headers[0]["authorization"] == "Bearer secret"
    assert isinstance(reply, AIMessage)
    assert reply.tool_calls == [
        {"name": "search_record", "args": {"resource_type": "Condition"}, "id": "srv_1", "type": "tool_call"}
    ]
    assert reply.usage_metadata == {"input_tokens": 42, "output_tokens": 7, "total_tokens": 49}
    assert reply.response_metadata["tool_protocol"] == "native"
    assert reply.response_metadata["finish_reason"] == "stop"


def test_a_named_tool_choice_is_sent_in_openai_form() -> None:
    server = Server((200, completion({"content": "", "tool_calls": [native_call("record_manifest", "{}")]})))
    model(server).bind_tools(TOOLS, tool_choice="record_manifest").invoke(MESSAGES)
    assert server.payloads[0]["tool_choice"] == {"type": "function", "function": {"name": "record_manifest"}}


def test_native_calls_with_bad_arguments_become_invalid_calls() -> None:
    server = Server((200, completion({"tool_calls": [native_call("search_record", '{"resource_type": 3}')]})))
    reply = model(server).bind_tools(TOOLS).invoke(MESSAGES)
    assert reply.tool_calls == []
    [bad] = reply.invalid_tool_calls
    assert bad["id"] == "srv_1"
    assert "argument 'resource_type': 3 is not one of" in (bad["error"] or "")


def test_a_call_written_as_text_is_parsed_tolerantly() -> None:
    call = '{"name": "search_record", "arguments": {"resource_type": "Observation"}}'
    text = f"Let me check.\n```json\n{call}\n```"
    server = Server((200, completion({"content": text})))
    reply = model(server).bind_tools(TOOLS).invoke(MESSAGES)
    assert [c["args"] for c in reply.tool_calls] == [{"resource_type": "Observation"}]
    assert reply.content == "Let me check."


def test_a_server_refusing_tools_is_asked_again_with_the_prompt_protocol() -> None:
    refused = {"error": {"message": '"auto" tool choice requires --enable-auto-tool-choice'}}
    call = '{"name": "search_record", "arguments": {"resource_type": "Condition"}}'
    server = Server(
        (400, refused), (200, completion({"content": call})), (200, completion({"content": call}))
    )
    chat = model(server).bind_tools(TOOLS, tool_choice="search_record")
    reply = chat.invoke(MESSAGES)
    first, second = server.payloads[0], server.payloads[1]
    assert "tools" in first and "tools" not in second
    assert "### search_record" in second["messages"][0]["content"]
    assert second["messages"][0]["role"] == "system"
    assert second["response_format"]["type"] == "json_schema"
    schema = second["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["name"] == {"const": "search_record"}
    assert [c["name"] for c in reply.tool_calls] == ["search_record"]
    assert reply.response_metadata["tool_protocol"] == "prompt"
    chat.invoke(MESSAGES)
    assert "tools" not in server.payloads[2]


def test_earlier_calls_and_results_are_sent_natively() -> None:
    server = Server((200, completion({"content": "7.9 % [Observation/abc]"})))
    history = [
        *MESSAGES,
        AIMessage("", tool_calls=[{"name": "record_manifest", "args": {}, "id": "c1"}]),
        ToolMessage("Observation: HbA1c (3)", tool_call_id="c1"),
    ]
    reply = model(server).bind_tools(TOOLS).invoke(history)
    sent = server.payloads[0]["messages"]
    assert sent[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "record_manifest", "arguments": "{}"}}
        ],
    }
    assert sent[3] == {"role": "tool", "tool_call_id": "c1", "content": "Observation: HbA1c (3)"}
    assert reply.content == "7.9 % [Observation/abc]"
    assert reply.tool_calls == [] and reply.invalid_tool_calls == []


def test_structured_output_rides_on_a_forced_call() -> None:
    class Answer(BaseModel):
        """The final answer with its citations."""

        text: str
        citations: list[str]

    arguments = json.dumps({"text": "7.9 %", "citations": ["Observation/abc"]})
    server = Server((200, completion({"tool_calls": [native_call("Answer", arguments)]})))
    answer = model(server).with_structured_output(Answer).invoke(MESSAGES)
    assert answer == Answer(text="7.9 %", citations=["Observation/abc"])
    assert server.payloads[0]["tool_choice"] == "required"


def test_missing_usage_is_reported_as_zero_and_flagged() -> None:
    server = Server((200, completion({"content": "hi"}, usage=False)))
    reply = model(server).invoke(MESSAGES)
    assert reply.usage_metadata == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    assert reply.response_metadata["usage_reported"] is False


async def test_async_calls_share_one_client() -> None:
    server = Server((200, completion({"content": "one"})), (200, completion({"content": "two"})))
    chat = model(server)
    first = await chat.ainvoke(MESSAGES)
    client = chat._aclient
    second = await chat.ainvoke(MESSAGES)
    assert (first.content, second.content) == ("one", "two")
    assert chat._aclient is client
    await chat.aclose()


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, {"error": {"message": "CUDA out of memory"}}, "answered 500: CUDA out of memory"),
        (401, {"error": "bad key"}, "answered 401: bad key (check the API key: CLINICFLOW_MODEL_API_KEY)"),
        (200, {"object": "list"}, "not a chat completion"),
    ],
)
def test_error_answers_raise_a_response_error_naming_the_url(
    status: int, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelResponseError) as info:
        model(Server((status, body))).invoke(MESSAGES)
    assert "the model server at http://model.test/v1/chat/completions" in str(info.value)
    assert message in str(info.value)


def test_a_slow_server_raises_a_timeout_error() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ModelTimeoutError, match=r"did not answer within 5 s"):
        model(slow, timeout=5).invoke(MESSAGES)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_server_is_named() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(
        ModelConnectionError, match=f"cannot reach the model server at {url}/chat/completions"
    ):
        OpenAIChatModel(base_url=url, timeout=5).invoke(MESSAGES)


async def test_an_unreachable_server_is_named_async() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    chat = OpenAIChatModel(base_url=url, timeout=5)
    with pytest.raises(ModelConnectionError, match="is the server running"):
        await chat.ainvoke(MESSAGES)
    await chat.aclose()


def png(color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_without_tools_messages_go_out_natively_with_their_images() -> None:
    server = Server((200, completion({"content": "A chest X-ray."})))
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64encode(png()).decode()}"}}
    question = HumanMessage(content=[{"type": "text", "text": "What is this?"}, image])  # type: ignore[list-item]
    reply = model(server).invoke([SystemMessage("You are a radiologist."), question])
    payload = server.payloads[0]
    assert "tools" not in payload and "tool_choice" not in payload
    assert payload["messages"][1] == {
        "role": "user",
        "content": [{"type": "text", "text": "What is this?"}, image],
    }
    assert reply.content == "A chest X-ray."
    assert reply.response_metadata["tool_protocol"] == "plain"


def test_local_files_and_fhir_attachments_go_out_as_data_urls(tmp_path: Path) -> None:
    scan = tmp_path / "cxr.png"
    scan.write_bytes(png())
    attachment = {"contentType": "image/png", "data": b64encode(png((0, 0, 0))).decode()}
    question = HumanMessage(
        content=[
            "Compare",
            {"type": "image_url", "image_url": {"url": str(scan)}},
            {"type": "image", "fhir_attachment": attachment},
            {"type": "image", "base64": b64encode(png((9, 9, 9))).decode(), "mime_type": "image/png"},
        ]  # type: ignore[list-item]
    )
    server = Server((200, completion({"content": "Same lungs."})))
    model(server).invoke([question])
    parts = server.payloads[0]["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "Compare"}
    urls = [p["image_url"]["url"] for p in parts[1:]]
    assert [p["type"] for p in parts[1:]] == ["image_url"] * 3
    assert all(u.startswith("data:image/png;base64,") for u in urls)
    sent = [b64decode(u.split(",", 1)[1]) for u in urls]
    assert sent == [png(), png((0, 0, 0)), png((9, 9, 9))]


def test_a_web_image_is_refused_before_anything_is_sent() -> None:
    server = Server()
    question = HumanMessage(
        content=[{"type": "image_url", "image_url": {"url": "https://example.org/cxr.png"}}]  # type: ignore[list-item]
    )
    with pytest.raises(ModelInputError, match="is a web address; the model layer makes no network requests"):
        model(server).invoke([question])
    assert server.payloads == []
