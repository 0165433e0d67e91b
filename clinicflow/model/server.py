"""`clinicflow model serve`: an OpenAI-compatible chat-completions server over one loaded chat model.

One model process per GPU box, shared by many graph workers through `OpenAIChatModel`. It honours
`tools` and `tool_choice` (with grammar-constrained calls when a call is required) and returns native
`tool_calls`; a reply that is not a valid call comes back as text, which clients parse tolerantly.
Not streamed; one request at a time reaches the model (the backend's lock).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, ConfigDict, Field

from clinicflow.model.errors import ModelError

__all__ = ["ChatCompletionRequest", "create_app", "to_messages"]


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


def to_messages(messages: list[dict[str, Any]]) -> list[BaseMessage]:
    """OpenAI chat messages as langchain messages; raises ValueError on an unknown role."""
    out: list[BaseMessage] = []
    for m in messages:
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


def create_app(chat: BaseChatModel, model_name: str) -> Any:
    """A FastAPI app serving `chat` as `model_name` at /v1/chat/completions and /v1/models."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI(title="clinicflow model server", version="1")

    def error(status: int, message: str) -> Any:
        return JSONResponse(
            {"error": {"message": message, "type": "invalid_request_error"}}, status_code=status
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "clinicflow"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def completions(request: ChatCompletionRequest) -> Any:
        if request.stream:
            return error(400, "streaming is not supported by this server; send stream=false")
        try:
            messages = to_messages(request.messages)
            runnable: Any = chat
            if request.tools:
                choice = request.tool_choice
                if isinstance(choice, dict):
                    choice = (choice.get("function") or {}).get("name") or "any"
                runnable = chat.bind_tools(request.tools, tool_choice=choice)
        except ValueError as exc:
            return error(400, str(exc))
        kwargs: dict[str, Any] = {}
        limit = request.max_completion_tokens or request.max_tokens
        if limit:
            kwargs["max_new_tokens"] = limit
        stop = [request.stop] if isinstance(request.stop, str) else request.stop
        try:
            reply = await runnable.ainvoke(messages, stop=stop, **kwargs)
        except ModelError as exc:
            return error(500, str(exc))
        return _completion(reply, model_name)

    return app


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
    usage = reply.usage_metadata or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"],
        },
    }
