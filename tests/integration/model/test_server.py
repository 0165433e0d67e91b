"""`clinicflow model serve` for real: a uvicorn server process over the real Gemma 3 270M, called with the
`openai` client and with `OpenAIChatModel` over TCP."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage

from clinicflow.model import OpenAIChatModel
from tests.integration.model.test_generation import CALL_SCHEMA, QUESTION, search_record

MAX_CONTEXT = 1024
TOOL = {
    "type": "function",
    "function": {
        "name": "search_record",
        "description": "Search the patient's record by resource type.",
        "parameters": {
            "type": "object",
            "properties": {"resource_type": {"enum": ["Observation", "Condition"]}},
            "required": ["resource_type"],
        },
    },
}


@pytest.fixture(scope="module")
def server_url(gemma_dir: Path) -> Iterator[str]:
    """Base URL of a `clinicflow model serve` process on the 270M, stopped after the module."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = shutil.which("clinicflow", path=str(Path(sys.executable).parent)) or "clinicflow"
    process = subprocess.Popen(
        [
            command,
            "model",
            "serve",
            "--model",
            str(gemma_dir),
            "--port",
            str(port),
            "--max-context",
            str(MAX_CONTEXT),
        ],
        env={**os.environ, "CLINICFLOW_MODEL_URL": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the model server exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the model server did not start within 180 s")
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def client(server_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server_url, api_key="unused", timeout=600, max_retries=0)


@pytest.mark.slow
async def test_openai_client_plain_and_streamed_replies_agree(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "Name a vitamin."}]
    models = await client.models.list()
    assert [m.id for m in models.data] == ["gemma-3-270m"]
    whole = await client.chat.completions.create(model="gemma-3-270m", messages=messages, max_tokens=6)  # type: ignore[arg-type]
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 6
    stream = await client.chat.completions.create(  # type: ignore[call-overload]
        model="gemma-3-270m",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert "".join(parts).strip() == whole.choices[0].message.content
    assert len([p for p in parts if p]) > 1
    assert finish == "length" and usage is not None and usage.completion_tokens == 6


@pytest.mark.slow
async def test_openai_client_gets_a_valid_required_tool_call(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(  # type: ignore[call-overload]
        model="gemma-3-270m",
        messages=[{"role": "user", "content": "What was the last HbA1c?"}],
        tools=[TOOL],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=32,
    )
    [choice] = reply.choices
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "search_record"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments)["resource_type"] in ("Observation", "Condition")  # type: ignore[union-attr]
    stream = await client.chat.completions.create(  # type: ignore[call-overload]
        model="gemma-3-270m",
        messages=[{"role": "user", "content": "What was the last HbA1c?"}],
        tools=[TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "search_record"}},
        max_tokens=32,
        stream=True,
    )
    names = [
        d.function.name
        async for chunk in stream
        if chunk.choices
        for d in chunk.choices[0].delta.tool_calls or []
        if d.function
    ]
    assert names == ["search_record"]


@pytest.mark.slow
async def test_response_format_json_schema_constrains_the_reply(client: openai.AsyncOpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"vitamin": {"type": "string", "maxLength": 8}},
        "required": ["vitamin"],
        "additionalProperties": False,
    }
    reply = await client.chat.completions.create(
        model="gemma-3-270m",
        messages=[{"role": "user", "content": "Name a vitamin, as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "v", "schema": schema}},
        max_tokens=24,
    )
    assert set(json.loads(reply.choices[0].message.content or "")) == {"vitamin"}


@pytest.mark.slow
async def test_over_long_and_malformed_requests_get_a_400_that_says_why(
    client: openai.AsyncOpenAI, server_url: str
) -> None:
    with pytest.raises(openai.BadRequestError, match="context window of 1024 tokens"):
        await client.chat.completions.create(
            model="gemma-3-270m", messages=[{"role": "user", "content": "blood " * 1500}], max_tokens=4
        )
    with pytest.raises(openai.BadRequestError, match="context window"):
        await client.chat.completions.create(
            model="gemma-3-270m", messages=[{"role": "user", "content": "blood " * 1500}], stream=True
        )
    async with httpx.AsyncClient() as http:
        broken = await http.post(
            f"{server_url}/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        missing = await http.post(f"{server_url}/chat/completions", json={"model": "m"})
    assert broken.status_code == 400 and "invalid request body" in broken.json()["error"]["message"]
    assert missing.status_code == 400 and "messages" in missing.json()["error"]["message"]


@pytest.mark.slow
async def test_64_concurrent_requests_all_complete(client: openai.AsyncOpenAI) -> None:
    async def ask(i: int) -> int:
        reply = await client.chat.completions.create(
            model="gemma-3-270m", messages=[{"role": "user", "content": f"Patient {i}: fever?"}], max_tokens=2
        )
        assert reply.usage is not None
        return reply.usage.completion_tokens

    counts = await asyncio.gather(*(ask(i) for i in range(64)))
    assert counts == [2] * 64


@pytest.mark.slow
async def test_the_openai_backend_gets_native_calls_from_the_server(server_url: str) -> None:
    chat = OpenAIChatModel(base_url=server_url, model="gemma-3-270m", max_new_tokens=96, timeout=600)
    try:
        reply = await chat.bind_tools([search_record], tool_choice="search_record").ainvoke(QUESTION)
        plain = await chat.ainvoke([HumanMessage("Hello")], max_new_tokens=3)
    finally:
        await chat.aclose()
    assert reply.invalid_tool_calls == []
    [call] = reply.tool_calls
    CALL_SCHEMA.model_validate(call["args"])
    assert reply.response_metadata["tool_protocol"] == "native"
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert plain.usage_metadata is not None and plain.usage_metadata["output_tokens"] == 3
    assert plain.response_metadata["finish_reason"] == "length"
