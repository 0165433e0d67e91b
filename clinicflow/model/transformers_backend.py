"""In-process backend: a Hugging Face model folder run with transformers, CUDA when present, else CPU.

Serves the CPU default (Gemma 3 270M) and MedGemma 27B text-it / 4B-it from a local folder. Each
folder is loaded once per process and shared by every `TransformersChatModel` on it (see
`clinicflow.model.model_folder`); concurrent requests are collected by the model's `BatchScheduler`
into batched `generate` calls (see `clinicflow.model.batching`; `clinicflow.model.engine` for the
CUDA fast path and CPU int8). When a tool call is required (`tool_choice` `any` or a tool name), or a
`json_schema` is given, decoding is constrained by that JSON schema (see `clinicflow.model.constrained`
and `clinicflow.model.grammar`), so the reply parses.

With a Gemma 3 multimodal folder (as MedGemma 4B-it), images in the messages (see
`clinicflow.model.image_inputs`) become `<start_of_image>` in the prompt, which the processor
expands into the image's soft tokens, and their `pixel_values` go to `generate`. Image requests
batch with each other and with text requests. A text-only model refuses images with a
`ModelInputError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from clinicflow.model.base import PromptToolChatModel, ReplyRequest, usage
from clinicflow.model.batching import GenerationOutput, GenerationRequest
from clinicflow.model.constrained import Constraint, constrain, constrained_budget
from clinicflow.model.engine_options import Quantization
from clinicflow.model.errors import ModelInputError
from clinicflow.model.image_inputs import load_image
from clinicflow.model.model_folder import LoadedModel, backend_module, check_model_folder, load_model_folder
from clinicflow.model.prompting import chat_turns, image_blocks, render_chat
from clinicflow.model.streaming import IncrementalText, TokenStream
from clinicflow.model.tool_calls import ToolSpec, allowed_tools, call_json_schema, tool_prompt

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "LoadedModel",
    "TransformersChatModel",
    "check_model_folder",
    "constrained_budget",
    "load_model_folder",
]


class TransformersChatModel(PromptToolChatModel):
    """Chat model on a local Hugging Face folder (Gemma 3 270M by default, or MedGemma), greedy by default."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    """A Hugging Face model folder (config.json, weights, tokenizer)."""
    device: str | None = None
    """torch device; default cuda when present, else cpu."""
    dtype: str = "auto"
    """torch dtype name; `auto` is bfloat16 on CUDA and on CPUs with native bf16, else float32."""
    temperature: float = 0.0
    """0 decodes greedily; above 0 samples."""
    max_string_length: int | None = 200
    """Longest free string a constrained tool call may hold, so a small model cannot ramble to the limit."""
    max_array_items: int | None = None
    """Longest list a constrained tool call may hold (unbounded when None)."""
    cpu_threads: int | None = None
    """torch CPU threads for the whole process, set at load; 1 is ~3x faster on an oversubscribed CPU."""
    quantization: Quantization = "none"
    """CPU int8 dynamic quantization: `int8` (every Linear), `int8-head` (output head only) or `none`."""
    fast_path: Literal["auto", "on", "off"] = "auto"
    """Static KV cache, compiled decode and prefix reuse: `auto` is on for CUDA only; `off` is eager."""
    decode: Literal["generate", "own"] = "generate"
    """Who runs the decode steps: transformers `generate` or clinicflow's own loop (Gemma 3 text)."""
    max_batch: int = 64
    """Most concurrent requests run in one batched `generate`."""
    batch_window_ms: float = 5.0
    """How long the scheduler waits for more requests after the first one of a batch."""
    max_context_tokens: int | None = None
    """Cap on prompt plus reply tokens (default: the model's own context window)."""

    @property
    def _llm_type(self) -> str:
        return "clinicflow-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "device": self.device,
            "dtype": self.dtype,
            "quantization": self.quantization,
        }

    def load(self) -> LoadedModel:
        """The loaded model (loads it on first use; later calls and other instances share it)."""
        if self.cpu_threads:
            backend_module("torch").set_num_threads(self.cpu_threads)
        return load_model_folder(
            self.model_path,
            device=self.device,
            dtype=self.dtype,
            quantization=self.quantization,
            fast_path=self.fast_path,
            decode=self.decode,
        )

    def takes_images(self) -> bool:
        """True for a multimodal folder (MedGemma 4B): it loaded with a Gemma 3 processor."""
        return self.load().processor is not None

    def context_limit(self, loaded: LoadedModel) -> int:
        """Longest prompt plus reply this model takes, in tokens."""
        if self.max_context_tokens:
            return min(self.max_context_tokens, loaded.context_length)
        return loaded.context_length

    def _reply(self, request: ReplyRequest) -> ChatResult:
        loaded = self.load()
        specs, choice = request.specs, request.choice
        prompt, images = self._prompt(loaded, request.messages, tool_prompt(specs, choice))
        text, stats = self._complete(
            loaded,
            prompt,
            specs,
            choice,
            request.stop,
            self._token_limit(request.kwargs),
            images=images,
            json_schema=request.kwargs.get("json_schema"),
        )
        return self._result(
            text,
            specs,
            choice,
            truncated=stats["finish_reason"] == "length",
            constrained=stats["constrained"],
            input_tokens=stats.pop("input_tokens"),
            output_tokens=stats.pop("output_tokens"),
            metadata={"model_name": Path(loaded.path).name, **stats},
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Text chunks as tokens are decoded; with tools bound or a `json_schema`, one final chunk."""
        specs, choice = self._tool_setup(kwargs)
        if (specs and choice != "none") or kwargs.get("json_schema"):
            result = await self._agenerate(messages, stop, None, **kwargs)
            yield _whole_chunk(result.generations[0].message)
            return
        loaded = await asyncio.to_thread(self.load)
        prompt, images = await asyncio.to_thread(self._prompt, loaded, messages)
        max_new_tokens = self._token_limit(kwargs)

        def complete(on_token: Callable[[int], None]) -> tuple[str, dict[str, Any]]:
            return self._complete(
                loaded, prompt, [], "none", stop, max_new_tokens, images=images, on_token=on_token
            )

        stream = TokenStream(complete, IncrementalText(loaded.tokenizer, loaded.stop_ids, stop or []))
        async for delta in stream.deltas():
            yield ChatGenerationChunk(message=AIMessageChunk(content=delta))
        text, stats = stream.result
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=stream.rest(text),
                usage_metadata=usage(stats.pop("input_tokens"), stats.pop("output_tokens")),
                response_metadata={"model_name": Path(loaded.path).name, **stats},
                chunk_position="last",
            )
        )

    @staticmethod
    def _prompt(
        loaded: LoadedModel, messages: Sequence[BaseMessage], tool_section: str = ""
    ) -> tuple[str, list[Image.Image]]:
        """The prompt text and the images its markers stand for, in order."""
        blocks = image_blocks(messages)
        if blocks and loaded.processor is None:
            raise ModelInputError(
                f"the model in {loaded.path} takes no images: it is a text-only model; send the "
                "messages without images, or load a Gemma 3 multimodal folder such as MedGemma 4B-it"
            )
        images = [load_image(block) for block in blocks]
        marker = loaded.processor.boi_token if loaded.processor is not None else None
        turns = chat_turns(messages, tool_section, image_marker=marker)
        return render_chat(turns, loaded.chat_template, bos_token=loaded.bos_token), images

    def _complete(
        self,
        loaded: LoadedModel,
        prompt: str,
        specs: list[ToolSpec],
        choice: str,
        stop: list[str] | None,
        max_new_tokens: int,
        *,
        images: Sequence[Image.Image] = (),
        json_schema: dict[str, Any] | None = None,
        on_token: Callable[[int], None] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Generate a reply to the prompt text through the batch scheduler: the text and its statistics."""
        prompt_ids, pixel_values = loaded.encode(prompt, images)
        limit = self.context_limit(loaded)
        if len(prompt_ids) + max_new_tokens > limit:
            raise ModelInputError(
                f"the prompt has {len(prompt_ids)} tokens and the reply may take {max_new_tokens}, "
                f"more than the model's context window of {limit} tokens; shorten the conversation"
            )
        schema = json_schema
        if specs and choice not in ("auto", "none"):
            schema = call_json_schema(
                allowed_tools(specs, choice),
                max_string_length=self.max_string_length,
                max_items=self.max_array_items,
            )
        constraint = constrain(loaded, schema, max_new_tokens, room=limit - len(prompt_ids))
        if on_token is not None:
            for token in constraint.forced:
                on_token(token)
        request = GenerationRequest(
            prompt_ids=prompt_ids + constraint.forced,
            max_new_tokens=max(constraint.budget - len(constraint.forced), 1),
            matcher=constraint.matcher,
            temperature=self.temperature,
            stop_strings=tuple(stop or ()),
            on_token=on_token,
            pixel_values=pixel_values,
        )
        scheduler = loaded.scheduler(max_batch=self.max_batch, window_s=self.batch_window_ms / 1000)
        output = scheduler.generate(request)
        text, finish_reason = _reply_text(loaded, constraint.forced + output.tokens, stop)
        return text, _stats(loaded, constraint, output, len(prompt_ids), len(images), finish_reason)


def _reply_text(loaded: LoadedModel, new_ids: list[int], stop: list[str] | None) -> tuple[str, str]:
    """The reply's text without its stop token or stop string, and why it ended (`stop` or `length`)."""
    finish_reason = "length"
    if new_ids and new_ids[-1] in loaded.stop_ids:
        new_ids = new_ids[:-1]
        finish_reason = "stop"
    text = loaded.tokenizer.decode(new_ids, skip_special_tokens=True)
    for s in stop or []:
        if s in text:
            text, finish_reason = text[: text.index(s)], "stop"
    return text, finish_reason


def _stats(
    loaded: LoadedModel,
    constraint: Constraint,
    output: GenerationOutput,
    input_tokens: int,
    images: int,
    finish_reason: str,
) -> dict[str, Any]:
    """The statistics of one reply, as its response metadata shows them."""
    generated, forced = output.tokens, constraint.forced
    stats: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": len(forced) + len(generated),
        "images": images,
        "finish_reason": finish_reason,
        "constrained": constraint.matcher is not None,
        "forced_tokens": len(forced),
        "token_budget": constraint.budget,
        "generation_s": round(output.generation_s, 3),
        "grammar_setup_s": round(constraint.setup_s, 3),
        "tokens_per_s": round(len(generated) / output.generation_s, 2) if output.generation_s > 0 else None,
        "batch_size": output.batch_size,
        "prefix_tokens_reused": output.prefix_tokens_reused,
        "device": loaded.device,
    }
    if output.grammar_error:
        stats["grammar_error"] = output.grammar_error
    return stats


def _whole_chunk(message: Any) -> ChatGenerationChunk:
    """A finished reply as one stream chunk."""
    return ChatGenerationChunk(
        message=AIMessageChunk(
            content=message.content,
            tool_calls=getattr(message, "tool_calls", []),
            invalid_tool_calls=getattr(message, "invalid_tool_calls", []),
            usage_metadata=getattr(message, "usage_metadata", None),
            response_metadata=message.response_metadata,
        )
    )
