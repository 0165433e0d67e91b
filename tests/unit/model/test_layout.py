"""The model layer's modules: public names stay importable from their old homes, and the pieces they
were split into (the backend template, the error bases, cache buckets, text streaming) hold together."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import Field

from clinicflow.model import ModelConnectionError, ModelError, ModelResponseError, ModelTimeoutError
from clinicflow.model.base import PromptToolChatModel, ReplyRequest
from clinicflow.model.constrained import constrain
from clinicflow.model.static_cache import bucket, cache_length
from clinicflow.model.streaming import IncrementalText, TokenStream
from tests.unit.model.tools import TOOLS

HOMES = {
    "clinicflow.model.tool_calls": [
        "ParsedReply",
        "ToolSpec",
        "allowed_tools",
        "call_json_schema",
        "format_call",
        "max_json_bytes",
        "normalize_tool_choice",
        "parse_reply",
        "tool_prompt",
        "tool_specs",
        "validate_call",
    ],
    "clinicflow.model.engine": [
        "EngineOptions",
        "PrefixStore",
        "Quantization",
        "bucket",
        "default_dtype",
        "generate_batch",
        "quantize_for_cpu",
    ],
    "clinicflow.model.transformers_backend": [
        "LoadedModel",
        "TransformersChatModel",
        "check_model_folder",
        "constrained_budget",
        "load_model_folder",
    ],
    "clinicflow.model.training": [
        "END_OF_TURN",
        "Example",
        "TrainConfig",
        "TrainResult",
        "TrainingDataError",
        "encode_example",
        "read_examples",
        "train_lora",
    ],
}


@pytest.mark.parametrize("module", sorted(HOMES))
def test_public_names_stay_importable_from_their_old_module(module: str) -> None:
    loaded = importlib.import_module(module)
    assert sorted(loaded.__all__) == sorted(HOMES[module])
    assert all(getattr(loaded, name, None) is not None for name in HOMES[module])


class _EchoModel(PromptToolChatModel):
    """A backend that implements only `_reply`, as the template asks."""

    requests: list[ReplyRequest] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _reply(self, request: ReplyRequest) -> Any:
        self.requests.append(request)
        text = f"{request.choice}:{self._token_limit(request.kwargs)}"
        return self._result(
            text, request.specs, request.choice, truncated=False, input_tokens=1, output_tokens=1, metadata={}
        )


def test_a_backend_gets_the_bound_tools_read_back_sync_and_async() -> None:
    chat = _EchoModel()
    reply = chat.invoke([HumanMessage("Q")], max_new_tokens=7)
    assert isinstance(reply, AIMessage) and reply.content == "none:7"
    bound = chat.bind_tools(TOOLS, tool_choice="auto")
    areply = asyncio.run(bound.ainvoke([HumanMessage("Q")]))
    assert areply.content == "auto:256"
    assert [s.name for s in chat.requests[-1].specs] == ["search_record", "record_manifest"]


def test_the_server_errors_share_a_base_and_keep_their_words() -> None:
    errors: list[ModelError] = [
        ModelConnectionError("http://m", "refused"),
        ModelTimeoutError("http://m", 2.5),
        ModelResponseError("http://m", 503, "busy"),
        ModelResponseError("http://m", None, "no JSON"),
    ]
    assert [str(e) for e in errors] == [
        "cannot reach the model server at http://m: refused",
        "the model server at http://m did not answer within 2.5 s",
        "the model server at http://m answered 503: busy",
        "the model server at http://m: no JSON",
    ]
    assert [getattr(e, "url", None) for e in errors] == ["http://m"] * 4
    assert ModelResponseError("http://m", 503, "busy").status == 503


def test_cache_lengths_are_bucketed_by_multiples_or_powers_of_two() -> None:
    assert (bucket(3), bucket(64), bucket(300, multiple=256)) == (4, 64, 512)
    assert cache_length(100, [20, 40], compiled=False) == 256
    assert cache_length(300, [40], compiled=False) == 512
    assert cache_length(600, [40], compiled=True) == 1024
    assert cache_length(10, [1], compiled=True) == 256


def test_without_a_schema_a_reply_is_free() -> None:
    free = constrain(None, None, 48, room=100)
    assert (free.budget, free.matcher, free.forced, free.setup_s) == (48, None, [], 0.0)


class _Letters:
    """A tokenizer whose token i is the i-th letter."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(ord("a") + i) for i in ids)


def test_a_token_stream_hands_over_deltas_then_the_result() -> None:
    def complete(on_token: Any) -> tuple[str, dict[str, Any]]:
        for token in (0, 1, 2, 9):
            on_token(token)
        return "abc", {"output_tokens": 4}

    async def collect() -> tuple[list[str], TokenStream]:
        stream = TokenStream(complete, IncrementalText(_Letters(), stop_ids=[9], stop=[]))
        return [delta async for delta in stream.deltas()], stream

    deltas, stream = asyncio.run(collect())
    assert "".join(deltas) == "abc" and stream.result == ("abc", {"output_tokens": 4})
    assert stream.rest("abcd") == "d"


def test_incremental_text_holds_back_a_possible_stop_string() -> None:
    text = IncrementalText(_Letters(), stop_ids=[], stop=["cd"])
    assert [text.add(t) for t in (0, 1, 2, 3, 4)] == ["", "a", "b", "", ""]
    assert text.done and text.emitted == "ab"
