"""The OpenAI-compatible model server over a fixed-text model, alone and behind `OpenAIChatModel`."""

from __future__ import annotations

import io
import json
from base64 import b64encode
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatResult
from PIL import Image

from clinicflow.model import OpenAIChatModel
from clinicflow.model.image_inputs import load_image
from clinicflow.model.prompting import image_blocks
from clinicflow.model.server import create_app
from tests.unit.model.fakes import TextModel
from tests.unit.model.tools import TOOLS

CALL = '{"name": "search_record", "arguments": {"resource_type": "Observation"}}'


def test_a_valid_call_comes_back_as_native_tool_calls() -> None:
    fake = TextModel(reply=CALL)
    client = TestClient(create_app(fake, "gemma-3-270m"))
    tools = [{"type": "function", "function": {"name": "search_record", "parameters": {"type": "object"}}}]
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "x",
            "messages": [
                {"role": "system", "content": "Role."},
                {"role": "user", "content": "Q"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "search_record", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "nothing"},
            ],
            "tools": tools,
            "tool_choice": "required",
            "max_tokens": 7,
        },
    )
    assert response.status_code == 200
    body = response.json()
    [choice] = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "search_record"
    assert json.loads(call["function"]["arguments"]) == {"resource_type": "Observation"}
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert fake.seen == [(["search_record"], "any")]
    assert fake.limits == [7]
    [prompt] = fake.prompts
    assert [type(m) for m in prompt] == [SystemMessage, HumanMessage, AIMessage, ToolMessage]
    assert prompt[2].tool_calls[0]["id"] == "c1"  # type: ignore[attr-defined]


def test_bad_requests_are_refused_with_an_openai_error() -> None:
    client = TestClient(create_app(TextModel(reply="hi"), "m"))
    role = client.post("/v1/chat/completions", json={"messages": [{"role": "robot", "content": "Q"}]})
    assert role.status_code == 400 and role.json()["error"]["message"] == "unknown message role 'robot'"
    empty = client.post("/v1/chat/completions", json={"messages": []})
    assert empty.status_code == 400 and "messages" in empty.json()["error"]["message"]
    broken = client.post(
        "/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and "invalid request body" in broken.json()["error"]["message"]
    fmt = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Q"}], "response_format": {"type": "xml"}},
    )
    assert fmt.status_code == 400 and "'xml' is not supported" in fmt.json()["error"]["message"]
    assert client.get("/v1/models").json()["data"][0]["id"] == "m"
    assert client.get("/health").json() == {"status": "ok", "model": "m"}


def _events(body: str) -> list[dict[str, object]]:
    lines = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_a_streamed_reply_is_server_sent_events_ending_in_done() -> None:
    client = TestClient(create_app(TextModel(reply="Hello there"), "m"))
    response = client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "Q"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    chunks = _events(response.text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])  # type: ignore[index]
    assert text == "Hello there"
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def test_a_streamed_tool_call_arrives_as_a_tool_calls_delta() -> None:
    client = TestClient(create_app(TextModel(reply=CALL), "m"))
    tools = [{"type": "function", "function": {"name": "search_record", "parameters": {"type": "object"}}}]
    response = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Q"}], "tools": tools, "stream": True},
    )
    chunks = _events(response.text)
    [delta] = [
        c["choices"][0]["delta"]["tool_calls"] for c in chunks if "tool_calls" in c["choices"][0]["delta"]
    ]  # type: ignore[index,operator]
    assert delta[0]["function"]["name"] == "search_record" and delta[0]["index"] == 0
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"  # type: ignore[index]


async def test_the_openai_backend_round_trips_through_the_server() -> None:
    server = create_app(TextModel(reply=f"Looking it up.\n{CALL}"), "gemma-3-270m")
    chat = OpenAIChatModel(base_url="http://clinicflow.test/v1", transport=httpx.ASGITransport(app=server))
    reply = await chat.bind_tools(TOOLS, tool_choice="search_record").ainvoke([HumanMessage("Last HbA1c?")])
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("search_record", {"resource_type": "Observation"})
    ]
    assert reply.content == "Looking it up."
    assert reply.response_metadata["tool_protocol"] == "native"
    assert reply.usage_metadata == {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}
    await chat.aclose()


async def test_an_invalid_call_reaches_the_client_as_text_and_is_reported_there() -> None:
    server = create_app(TextModel(reply='{"name": "search_record", "arguments": {"resource_type": 1}}'), "m")
    chat = OpenAIChatModel(base_url="http://clinicflow.test", transport=httpx.ASGITransport(app=server))
    reply = await chat.bind_tools(TOOLS, tool_choice="any").ainvoke([HumanMessage("Q")])
    assert reply.tool_calls == []
    assert "argument 'resource_type': 1 is not one of" in (reply.invalid_tool_calls[0]["error"] or "")
    await chat.aclose()


class ImageSizeModel(TextModel):
    """Reads every image of the prompt as the in-process backend does and replies with their sizes."""

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.prompts.append(list(messages))
        sizes = [load_image(block).size for block in image_blocks(messages)]
        text = " ".join(f"{w}x{h}" for w, h in sizes)
        return self._result(text, [], "none", truncated=False, input_tokens=3, output_tokens=1, metadata={})


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (40, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_url_parts_reach_the_backend_as_sent() -> None:
    fake = ImageSizeModel(reply="")
    client = TestClient(create_app(fake, "medgemma-4b-it"))
    image = {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{b64encode(png((5, 3))).decode()}"},
    }
    content = [{"type": "text", "text": "What is this?"}, image]
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "5x3"
    [prompt] = fake.prompts
    assert isinstance(prompt[0], HumanMessage) and prompt[0].content == content


def test_an_image_the_backend_refuses_is_a_400_that_says_why() -> None:
    client = TestClient(create_app(ImageSizeModel(reply=""), "m"))
    content = [{"type": "image_url", "image_url": {"url": "https://example.org/cxr.png"}}]
    for stream in (False, True):
        response = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": content}], "stream": stream},
        )
        assert response.status_code == 400
        assert "the model layer makes no network requests" in response.json()["error"]["message"]


async def test_a_local_image_travels_from_the_openai_backend_to_the_server_as_a_data_url(
    tmp_path: Path,
) -> None:
    scan = tmp_path / "cxr.png"
    scan.write_bytes(png((7, 4)))
    fake = ImageSizeModel(reply="")
    chat = OpenAIChatModel(
        base_url="http://clinicflow.test/v1", transport=httpx.ASGITransport(app=create_app(fake, "m"))
    )
    question = HumanMessage(
        content=[{"type": "text", "text": "Size?"}, {"type": "image_url", "image_url": {"url": str(scan)}}]  # type: ignore[list-item]
    )
    reply = await chat.ainvoke([question])
    assert reply.content == "7x4"
    [prompt] = fake.prompts
    sent = prompt[0].content[1]  # type: ignore[index]
    assert sent["image_url"]["url"] == f"data:image/png;base64,{b64encode(png((7, 4))).decode()}"  # type: ignore[index]
    await chat.aclose()
