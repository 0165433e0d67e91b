"""`clinicflow model serve` for real: uvicorn on a free port over the real Gemma 3 270M, called by
`OpenAIChatModel` over TCP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from langchain_core.messages import HumanMessage

from clinicflow.model import OpenAIChatModel, TransformersChatModel
from clinicflow.model.server import create_app
from tests.integration.model.test_generation import CALL_SCHEMA, QUESTION, search_record


@pytest.fixture
def model_server(gemma: TransformersChatModel) -> Iterator[str]:
    """Base URL of a model server on the session's Gemma, stopped after the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(gemma, "gemma-3-270m"), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the model server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.slow
async def test_a_forced_call_over_http_is_a_valid_native_call(model_server: str) -> None:
    chat = OpenAIChatModel(base_url=model_server, model="gemma-3-270m", max_new_tokens=48, timeout=600)
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
    assert reply.response_metadata["model_name"] == "gemma-3-270m"
    assert plain.usage_metadata is not None and plain.usage_metadata["output_tokens"] == 3
    assert plain.response_metadata["finish_reason"] == "length"
