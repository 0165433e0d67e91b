"""HTTP backend: any OpenAI-compatible `/v1/chat/completions` server (vLLM, llama-server, Ollama, ...).

Tools go out in the native `tools`/`tool_choice` fields and native `tool_calls` come back. A server
that rejects those fields (400/422) is asked again with the prompt protocol of
`clinicflow.model.tool_calls` (and, when a call is required, a `response_format` JSON schema, which
vLLM, llama-server and Ollama use to constrain decoding); a server that answers a call as text is
parsed tolerantly. One `httpx.Client` and one `httpx.AsyncClient` per model, reused by every request.
Images in user messages (any shape `clinicflow.model.image_inputs` reads) go out as OpenAI
`image_url` parts holding base64 data URLs, so the server needs no access to the client's files.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import httpx
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from clinicflow.model.base import PromptToolChatModel, ReplyRequest, usage
from clinicflow.model.errors import (
    ModelConnectionError,
    ModelResponseError,
    ModelTimeoutError,
)
from clinicflow.model.image_inputs import image_data_url, is_image_block
from clinicflow.model.prompting import chat_turns, message_text
from clinicflow.model.tool_calls import (
    ToolSpec,
    allowed_tools,
    call_json_schema,
    parse_reply,
    tool_prompt,
    validate_call,
)

__all__ = ["OpenAIChatModel", "chat_completions_url"]

_FALLBACK_STATUSES = frozenset({400, 422})
Attempt = Literal["plain", "native", "prompt+schema", "prompt"]


def chat_completions_url(base_url: str) -> str:
    """The completions endpoint for a base URL: `http://host:8000` and `.../v1` both work."""
    url = base_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if httpx.URL(url).path in ("", "/"):
        url += "/v1"
    return url + "/chat/completions"


class OpenAIChatModel(PromptToolChatModel):
    """Chat model served over the OpenAI chat-completions API; greedy (temperature 0) by default."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_url: str
    """The server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1."""
    model: str = "medgemma-27b-text-it"
    """Model name sent in each request."""
    api_key: SecretStr | None = None
    timeout: float = 120.0
    """Seconds to wait for a connection and for the whole answer."""
    temperature: float = 0.0
    tool_protocol: Literal["native", "prompt"] = "native"
    """`native` sends `tools` (falling back to `prompt` if the server refuses); `prompt` never does."""
    images: bool = True
    """Whether the served model takes images (MedGemma 4B does, 27B text does not)."""

    transport: Any = Field(default=None, exclude=True, repr=False)
    """An httpx transport serving both clients (tests pass `httpx.MockTransport`)."""

    _client: httpx.Client | None = PrivateAttr(default=None)
    _aclient: httpx.AsyncClient | None = PrivateAttr(default=None)
    _aclient_loop: asyncio.AbstractEventLoop | None = PrivateAttr(default=None)
    _native_refused: bool = PrivateAttr(default=False)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def takes_images(self) -> bool:
        return self.images

    @property
    def _llm_type(self) -> str:
        return "clinicflow-openai"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model}

    @property
    def endpoint(self) -> str:
        """The chat-completions URL requests go to."""
        return chat_completions_url(self.base_url)

    def close(self) -> None:
        """Close the sync client."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    async def aclose(self) -> None:
        """Close both clients."""
        self.close()
        client, self._aclient = self._aclient, None
        if client is not None:
            await client.aclose()

    def _reply(self, request: ReplyRequest) -> ChatResult:
        client = self._sync_client()
        for attempt, payload, last in self._attempts(request):
            started = time.perf_counter()
            result = self._answer(self._post(client, payload), request, attempt, last, started)
            if result is not None:
                return result
        raise AssertionError("unreachable: the last attempt always returns")

    async def _areply(self, request: ReplyRequest) -> ChatResult:
        client = self._async_client()
        for attempt, payload, last in self._attempts(request):
            started = time.perf_counter()
            result = self._answer(await self._apost(client, payload), request, attempt, last, started)
            if result is not None:
                return result
        raise AssertionError("unreachable: the last attempt always returns")

    def _headers(self) -> dict[str, str]:
        if self.api_key is None:
            return {}
        return {"Authorization": f"Bearer {self.api_key.get_secret_value()}"}

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout, headers=self._headers(), transport=self.transport
                )
            return self._client

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._aclient is None or self._aclient_loop is not loop:
                self._aclient = httpx.AsyncClient(
                    timeout=self.timeout, headers=self._headers(), transport=self.transport
                )
                self._aclient_loop = loop
            return self._aclient

    def _attempts(self, request: ReplyRequest) -> Iterator[tuple[Attempt, dict[str, Any], bool]]:
        """Each way to ask, simplest last, with its payload and whether it is the last one."""
        attempts = self._protocols(request.specs, request.choice)
        for i, attempt in enumerate(attempts):
            yield attempt, self._payload(request, attempt), i == len(attempts) - 1

    def _protocols(self, specs: Sequence[ToolSpec], choice: str) -> list[Attempt]:
        if not specs or choice == "none":
            return ["plain"]
        prompt: list[Attempt] = ["prompt+schema", "prompt"] if choice != "auto" else ["prompt"]
        if self.tool_protocol == "native" and not self._native_refused:
            return ["native", *prompt]
        return prompt

    def _answer(
        self, response: httpx.Response, request: ReplyRequest, attempt: Attempt, last: bool, started: float
    ) -> ChatResult | None:
        """The reply in `response`; None when the server refused this attempt's tool fields and a simpler
        attempt is left."""
        if response.status_code in _FALLBACK_STATUSES and not last:
            if attempt == "native":
                self._native_refused = True
            return None
        return self._parse(response, request.specs, request.choice, attempt, time.perf_counter() - started)

    def _payload(self, request: ReplyRequest, attempt: Attempt) -> dict[str, Any]:
        specs, choice = request.specs, request.choice
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self._token_limit(request.kwargs),
            "temperature": self.temperature,
        }
        if request.stop:
            payload["stop"] = list(request.stop)
        if attempt in ("plain", "native"):
            payload["messages"] = [_native_message(m) for m in request.messages]
            if attempt == "native":
                payload["tools"] = [s.openai_tool() for s in specs]
                payload["tool_choice"] = _native_choice(choice)
            return payload
        payload["messages"] = chat_turns(request.messages, tool_prompt(specs, choice))
        if attempt == "prompt+schema":
            schema = call_json_schema(allowed_tools(specs, choice))
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "tool_call", "schema": schema},
            }
        return payload

    def _post(self, client: httpx.Client, payload: dict[str, Any]) -> httpx.Response:
        try:
            return client.post(self.endpoint, json=payload)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    async def _apost(self, client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
        try:
            return await client.post(self.endpoint, json=payload)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    def _transport_error(self, exc: httpx.TransportError) -> Exception:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ModelTimeoutError(self.endpoint, self.timeout)
        reason = str(exc) or type(exc).__name__
        return ModelConnectionError(self.endpoint, f"{reason} (is the server running? check --model-url)")

    def _parse(
        self,
        response: httpx.Response,
        specs: Sequence[ToolSpec],
        choice: str,
        attempt: Attempt,
        elapsed: float,
    ) -> ChatResult:
        if response.status_code >= 400:
            raise ModelResponseError(self.endpoint, response.status_code, _error_detail(response))
        try:
            data = response.json()
            first = data["choices"][0]
            message = first["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModelResponseError(
                self.endpoint, response.status_code, f"not a chat completion: {response.text[:300]!r}"
            ) from exc
        text = message.get("content") or ""
        if not isinstance(text, str):
            text = message_text(text)
        finish_reason = first.get("finish_reason")
        native_calls = message.get("tool_calls") or []
        if native_calls:
            allowed = allowed_tools(specs, choice)
            calls: list[Any] = []
            invalid: list[Any] = []
            for native in native_calls:
                function = native.get("function") or {}
                checked = validate_call(function.get("name"), function.get("arguments"), allowed, choice)
                checked["id"] = native.get("id") or checked["id"]
                (invalid if checked["type"] == "invalid_tool_call" else calls).append(checked)
            content, tool_calls, invalid_calls = text.strip(), calls, invalid
        else:
            parsed = parse_reply(text, specs, choice, truncated=finish_reason == "length")
            content, tool_calls, invalid_calls = parsed.content, parsed.tool_calls, parsed.invalid_tool_calls
        counts = data.get("usage") or {}
        reply = AIMessage(
            content=content,
            tool_calls=tool_calls,  # type: ignore[arg-type]
            invalid_tool_calls=invalid_calls,  # type: ignore[arg-type]
            usage_metadata=usage(
                int(counts.get("prompt_tokens") or 0), int(counts.get("completion_tokens") or 0)
            ),
            response_metadata={
                "model_name": data.get("model") or self.model,
                "finish_reason": finish_reason,
                "tool_protocol": attempt.removesuffix("+schema"),
                "usage_reported": bool(counts),
                "generation_s": round(elapsed, 3),
                "raw_text": text,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])


def _native_choice(choice: str) -> Any:
    if choice in ("auto", "none"):
        return choice
    if choice == "any":
        return "required"
    return {"type": "function", "function": {"name": choice}}


def _native_message(message: BaseMessage) -> dict[str, Any]:
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": message_text(message.content)}
    if isinstance(message, ToolMessage):
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": message_text(message.content),
        }
    if isinstance(message, AIMessage):
        out: dict[str, Any] = {"role": "assistant", "content": message_text(message.content) or None}
        calls = [
            {
                "id": c.get("id"),
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
            }
            for c in message.tool_calls
        ]
        calls += [
            {
                "id": c.get("id"),
                "type": "function",
                "function": {"name": c.get("name") or "unknown", "arguments": c.get("args") or "{}"},
            }
            for c in message.invalid_tool_calls
        ]
        if calls:
            out["tool_calls"] = calls
        elif out["content"] is None:
            out["content"] = ""
        return out
    if isinstance(message.content, list) and any(is_image_block(p) for p in message.content):
        parts = [_openai_part(p) for p in message.content]
        return {"role": "user", "content": [p for p in parts if p is not None]}
    return {"role": "user", "content": message_text(message.content)}


def _openai_part(part: str | dict[str, Any]) -> dict[str, Any] | None:
    """A content block as an OpenAI part: text, or an image as a data URL (None for other blocks)."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if part.get("type") == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if is_image_block(part):
        return {"type": "image_url", "image_url": {"url": image_data_url(part)}}
    return None


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        detail = str(error["message"])
    elif isinstance(error, str):
        detail = error
    else:
        detail = json.dumps(body)[:300]
    if response.status_code in (401, 403):
        detail += " (check the API key: CLINICFLOW_MODEL_API_KEY)"
    return detail
