"""`clinicflow model serve`: an OpenAI-compatible chat-completions server over one loaded chat model.

One model process per GPU box, shared by many graph workers through `OpenAIChatModel`. It honours
`tools` and `tool_choice` (grammar-constrained calls when a call is required), `response_format`
(`json_schema` / `json_object`, grammar-constrained) and `stream` (server-sent events; text streams
token by token, a reply with tools or a schema comes as one delta once complete). Concurrent
requests are batched by the backend. Bad requests get a 400 with an OpenAI-style error body.
Message content may be a list of OpenAI parts: `image_url` parts reach the chat model as sent, and
an image the model cannot take (a web URL, bad data, a text-only model) is a 400 that says why.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, ConfigDict, Field

from clinicflow.model.errors import ModelError, ModelInputError

__all__ = ["ChatCompletionRequest", "create_app", "response_schema", "to_messages"]


class ChatCompletionRequest(BaseModel):
    """The subset of the OpenAI chat-completions request this server reads; other fields are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=1)


def to_messages(messages: list[dict[str, Any]]) -> list[BaseMessage]:
    """OpenAI chat messages as langchain messages; raises ValueError on an unknown role."""
    out: list[BaseMessage] = []
    for m in messages:
        if not isinstance(m, dict):
            raise ValueError(f"each message must be a JSON object, not {type(m).__name__}")
        role, content = m.get("role"), m.get("content") or ""
        if role in ("system", "developer"):
            out.append(SystemMessage(content))
        elif role == "user":
            out.append(HumanMessage(content))
        elif role == "assistant":
            calls = []
            for c in m.get("tool_calls") or []:
                function = c.get("function") or {}
                try:
                    args = json.loads(function.get("arguments") or "{}")
                except json.JSONDecodeError:
                    args = {}
                calls.append({"name": function.get("name", ""), "args": args, "id": c.get("id")})
            out.append(AIMessage(content, tool_calls=calls))
        elif role == "tool":
            out.append(ToolMessage(content, tool_call_id=m.get("tool_call_id") or ""))
        else:
            raise ValueError(f"unknown message role {role!r}")
    return out


def response_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema a `response_format` asks the reply to follow, or None for free text."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ValueError("response_format json_schema needs a 'schema' object")
        return schema
    raise ValueError(f"response_format type {kind!r} is not supported (use text, json_object or json_schema)")


def create_app(chat: BaseChatModel, model_name: str) -> Any:
    """A FastAPI app serving `chat` as `model_name` at /v1/chat/completions, /v1/models and /health."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError

    app = FastAPI(title="clinicflow model server", version="1")

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> Any:
        problems = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            problems.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return _error(400, "invalid request body: " + "; ".join(problems), "invalid_body")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "clinicflow"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def completions(request: ChatCompletionRequest) -> Any:
        return await _chat_completion(chat, model_name, request)

    return app


def _error(status: int, message: str, code: str | None = None) -> Any:
    """An OpenAI-style error response."""
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


async def _chat_completion(chat: BaseChatModel, model_name: str, request: ChatCompletionRequest) -> Any:
    """The answer to one chat-completions request: a completion, an event stream, or an error."""
    from fastapi.responses import StreamingResponse

    try:
        messages = to_messages(request.messages)
        runnable, has_tools = _with_tools(chat, request)
        schema = response_schema(request.response_format)
    except ValueError as exc:
        return _error(400, str(exc))
    kwargs: dict[str, Any] = {}
    limit = request.max_completion_tokens or request.max_tokens
    if limit:
        kwargs["max_new_tokens"] = limit
    if schema is not None and not has_tools:
        kwargs["json_schema"] = schema
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    include_usage = bool((request.stream_options or {}).get("include_usage"))
    try:
        if request.stream and not has_tools and schema is None:
            chunks = runnable.astream(messages, stop=stop, **kwargs).__aiter__()
            first = await chunks.__anext__()
            return StreamingResponse(
                _text_events(first, chunks, model_name, include_usage), media_type="text/event-stream"
            )
        reply = await runnable.ainvoke(messages, stop=stop, **kwargs)
    except ModelInputError as exc:
        return _error(400, str(exc), "context_length_exceeded" if "context window" in str(exc) else None)
    except ModelError as exc:
        return _error(500, str(exc))
    completion = _completion(reply, model_name)
    if request.stream:
        return StreamingResponse(_whole_events(completion, include_usage), media_type="text/event-stream")
    return completion


def _with_tools(chat: BaseChatModel, request: ChatCompletionRequest) -> tuple[Any, bool]:
    """The chat model with the request's tools bound, and whether a reply may call them."""
    if not request.tools:
        return chat, False
    choice = request.tool_choice
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name") or "any"
    return chat.bind_tools(request.tools, tool_choice=choice), choice != "none"


def _completion(reply: AIMessage, model_name: str) -> dict[str, Any]:
    meta = reply.response_metadata
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    finish_reason = meta.get("finish_reason") or "stop"
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
            }
            for c in reply.tool_calls
        ]
        message["content"] = reply.text or None
        finish_reason = "tool_calls"
    elif reply.invalid_tool_calls:
        message["content"] = meta.get("raw_text", reply.text)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": _usage(reply),
    }


def _usage(reply: AIMessage) -> dict[str, int]:
    counts = reply.usage_metadata or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    return {
        "prompt_tokens": counts["input_tokens"],
        "completion_tokens": counts["output_tokens"],
        "total_tokens": counts["total_tokens"],
    }


def _event(completion_id: str, model_name: str, delta: dict[str, Any], finish: str | None) -> str:
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


def _usage_event(completion_id: str, model_name: str, counts: dict[str, int]) -> str:
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model_name,
        "choices": [],
        "usage": counts,
    }
    return f"data: {json.dumps(chunk)}\n\n"


async def _whole_events(completion: dict[str, Any], include_usage: bool) -> AsyncIterator[str]:
    """A finished completion as a stream: the role, the content or the tool calls, the finish reason."""
    cid, name = completion["id"], completion["model"]
    [choice] = completion["choices"]
    message = choice["message"]
    yield _event(cid, name, {"role": "assistant", "content": ""}, None)
    if message.get("tool_calls"):
        calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        yield _event(cid, name, {"tool_calls": calls}, None)
    elif message.get("content"):
        yield _event(cid, name, {"content": message["content"]}, None)
    yield _event(cid, name, {}, choice["finish_reason"])
    if include_usage:
        yield _usage_event(cid, name, completion["usage"])
    yield "data: [DONE]\n\n"


async def _text_events(first: Any, rest: Any, model_name: str, include_usage: bool) -> AsyncIterator[str]:
    """Text chunks from the model's own stream, as they are decoded."""
    cid = f"chatcmpl-{uuid.uuid4().hex[:16]}"
    yield _event(cid, model_name, {"role": "assistant", "content": ""}, None)
    finish = "stop"
    counts = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    chunk = first
    while chunk is not None:
        if chunk.content:
            yield _event(cid, model_name, {"content": chunk.content}, None)
        finish = chunk.response_metadata.get("finish_reason") or finish
        if chunk.usage_metadata:
            counts = _usage(chunk)
        try:
            chunk = await rest.__anext__()
        except StopAsyncIteration:
            chunk = None
    yield _event(cid, model_name, {}, finish)
    if include_usage:
        yield _usage_event(cid, model_name, counts)
    yield "data: [DONE]\n\n"
