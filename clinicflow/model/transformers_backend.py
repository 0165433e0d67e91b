"""In-process backend: a Hugging Face model folder run with transformers, CUDA when present, else CPU.

Serves the CPU default (Gemma 3 270M) and MedGemma 27B text-it / 4B-it from a local folder. Each
folder is loaded once per process and shared by every `TransformersChatModel` on it; concurrent
requests are collected by the model's `BatchScheduler` into batched `generate` calls (see
`clinicflow.model.batching`; `clinicflow.model.engine` for the CUDA fast path and CPU int8).
When a tool call is required (`tool_choice` `any` or a tool name), or a `json_schema` is given,
decoding is constrained by that JSON schema (see `clinicflow.model.grammar`), so the reply parses.

A Gemma 3 multimodal folder (config `model_type` `gemma3` with a `vision_config`, as MedGemma 4B-it)
is loaded with the image-text-to-text auto class and its `AutoProcessor`: images in the messages
(see `clinicflow.model.image_inputs`) become `<start_of_image>` in the prompt, which the processor
expands into the image's soft tokens, and their `pixel_values` go to `generate`. Image requests
batch with each other and with text requests. A text-only model refuses images with a
`ModelInputError`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from clinicflow.model.base import PromptToolChatModel, usage
from clinicflow.model.batching import BatchScheduler, GenerationOutput, GenerationRequest
from clinicflow.model.engine import EngineOptions, Quantization, default_dtype
from clinicflow.model.errors import ModelDependencyError, ModelInputError, ModelLoadError, ModelNotFoundError
from clinicflow.model.image_inputs import load_image
from clinicflow.model.prompting import GEMMA3_CHAT_TEMPLATE, chat_turns, image_blocks, render_chat
from clinicflow.model.tool_calls import ToolSpec, allowed_tools, call_json_schema, max_json_bytes, tool_prompt

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["LoadedModel", "TransformersChatModel", "check_model_folder", "load_model_folder"]

_END_OF_TURN = "<end_of_turn>"
_cache: dict[tuple[Any, ...], LoadedModel] = {}
_cache_lock = threading.Lock()


@dataclass
class LoadedModel:
    """A model and tokenizer (and processor, if multimodal) in memory, shared by every chat model on it."""

    path: str
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    stop_ids: list[int]
    pad_id: int
    chat_template: str
    bos_token: str
    load_s: float
    context_length: int = 8192
    """Longest prompt plus reply the model takes, in tokens."""
    quantization: Quantization = "none"
    options: EngineOptions = field(default_factory=EngineOptions)
    processor: Any = None
    """The Gemma 3 processor of a multimodal folder; None for a text-only model."""
    image_token_id: int | None = None
    """Id of the image soft token the processor puts in the prompt (multimodal only)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Held while the model runs a batch."""
    _ll_tokenizer: Any = field(default=None, repr=False)
    _ll_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _schedulers: dict[tuple[int, float], BatchScheduler] = field(default_factory=dict, repr=False)

    def scheduler(self, *, max_batch: int = 64, window_s: float = 0.005) -> BatchScheduler:
        """The batch scheduler of this model for these settings, started on first use.

        One per (max_batch, window): a caller with a long window never holds up another's requests.
        """
        with self._ll_lock:
            key = (max_batch, window_s)
            if key not in self._schedulers:
                self._schedulers[key] = BatchScheduler(self.run_batch, max_batch=max_batch, window_s=window_s)
            return self._schedulers[key]

    def run_batch(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        """Generate one group of compatible requests together (what the scheduler calls)."""
        from clinicflow.model.engine import generate_batch

        with self.lock:
            return generate_batch(self, requests)

    def encode(self, prompt: str, images: Sequence[Image.Image] = ()) -> tuple[list[int], Any]:
        """Prompt token ids and, with images, their pixel values (the processor expands each marker)."""
        if not images:
            ids: list[int] = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            pixel_values = None
        else:
            try:
                inputs = self.processor(
                    text=prompt, images=[list(images)], return_tensors="pt", add_special_tokens=False
                )
            except ValueError as exc:
                raise ModelInputError(
                    f"the prompt's image markers do not match the number of images ({len(images)}); "
                    f"is {self.processor.boi_token} written in the message text? {exc}"
                ) from exc
            ids = inputs["input_ids"][0].tolist()
            pixel_values = inputs["pixel_values"]
        if self.image_token_id is not None:
            expected = 0 if pixel_values is None else len(pixel_values) * self.processor.image_seq_length
            if ids.count(self.image_token_id) != expected:
                raise ModelInputError(
                    "the message text holds image soft tokens of its own; remove "
                    f"{self.tokenizer.convert_ids_to_tokens(self.image_token_id)} from it"
                )
        return ids, pixel_values

    def ll_tokenizer(self) -> Any:
        """The llguidance tokenizer, built once on first use (it takes seconds)."""
        with self._ll_lock:
            if self._ll_tokenizer is None:
                from clinicflow.model.grammar import make_ll_tokenizer

                vocab = max(int(self.model.config.get_text_config().vocab_size), len(self.tokenizer))
                self._ll_tokenizer = make_ll_tokenizer(self.tokenizer, n_vocab=vocab, stop_ids=self.stop_ids)
            return self._ll_tokenizer


def check_model_folder(path: str | Path) -> Path:
    """The folder as an absolute path; raises ModelNotFoundError unless it holds a Hugging Face model."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelNotFoundError(str(folder), "does not exist")
    if not folder.is_dir():
        raise ModelNotFoundError(str(folder), "is not a folder (pass a Hugging Face model folder)")
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(str(folder), "has no config.json, so it is not a Hugging Face model folder")
    return folder.resolve()


def load_model_folder(
    path: str | Path,
    *,
    device: str | None = None,
    dtype: str = "auto",
    shared: bool = True,
    quantization: Quantization = "none",
    fast_path: Literal["auto", "on", "off"] = "auto",
    decode: Literal["generate", "own"] = "generate",
) -> LoadedModel:
    """Load a model folder, or return the copy this process already loaded with the same settings.

    `quantization` (CPU only) is int8 dynamic quantization of every Linear (`int8`) or of the output
    head (`int8-head`); `fast_path` `auto` takes the static-cache / compiled path on CUDA only;
    `decode="own"` decodes in clinicflow's own loop (Gemma 3 text models; see `EngineOptions`).
    `shared=False` always loads a private copy.
    """
    folder = check_model_folder(path)
    torch = _import("torch")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = default_dtype(device)
    if quantization != "none" and device != "cpu":
        raise ValueError(f"int8 dynamic quantization runs on the CPU only, not on {device}")
    options = EngineOptions.for_device(device, fast_path, decode)
    if not shared:
        return _load(folder, device, dtype, quantization, options)
    key = (str(folder), device, dtype, quantization, options)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _load(folder, device, dtype, quantization, options)
        return _cache[key]


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
            _import("torch").set_num_threads(self.cpu_threads)
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

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        loaded = self.load()
        specs, choice = self._tool_setup(kwargs)
        prompt, images = self._prompt(loaded, messages, tool_prompt(specs, choice))
        max_new_tokens = int(kwargs.get("max_new_tokens") or self.max_new_tokens)
        text, stats = self._complete(
            loaded,
            prompt,
            specs,
            choice,
            stop,
            max_new_tokens,
            images=images,
            json_schema=kwargs.get("json_schema"),
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

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)

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
            message = result.generations[0].message
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=message.content,
                    tool_calls=getattr(message, "tool_calls", []),
                    invalid_tool_calls=getattr(message, "invalid_tool_calls", []),
                    usage_metadata=getattr(message, "usage_metadata", None),
                    response_metadata=message.response_metadata,
                )
            )
            return
        loaded = await asyncio.to_thread(self.load)
        prompt, images = await asyncio.to_thread(self._prompt, loaded, messages)
        max_new_tokens = int(kwargs.get("max_new_tokens") or self.max_new_tokens)
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[int] = asyncio.Queue()

        def on_token(token: int) -> None:
            loop.call_soon_threadsafe(tokens.put_nowait, token)

        task = asyncio.ensure_future(
            asyncio.to_thread(
                self._complete,
                loaded,
                prompt,
                [],
                "none",
                stop,
                max_new_tokens,
                images=images,
                on_token=on_token,
            )
        )
        decoder = _IncrementalText(loaded.tokenizer, loaded.stop_ids, stop or [])
        while not task.done() or not tokens.empty():
            getter = asyncio.ensure_future(tokens.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            delta = decoder.add(getter.result())
            if delta:
                yield ChatGenerationChunk(message=AIMessageChunk(content=delta))
        text, stats = await task
        rest = text[len(decoder.emitted) :] if text.startswith(decoder.emitted) else ""
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=rest,
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
        tokenizer = loaded.tokenizer
        prompt_ids, pixel_values = loaded.encode(prompt, images)
        limit = self.context_limit(loaded)
        if len(prompt_ids) + max_new_tokens > limit:
            raise ModelInputError(
                f"the prompt has {len(prompt_ids)} tokens and the reply may take {max_new_tokens}, "
                f"more than the model's context window of {limit} tokens; shorten the conversation"
            )
        forced: list[int] = []
        matcher = None
        grammar_s = 0.0
        schema = json_schema
        if specs and choice not in ("auto", "none"):
            schema = call_json_schema(
                allowed_tools(specs, choice),
                max_string_length=self.max_string_length,
                max_items=self.max_array_items,
            )
        if schema is not None:
            import llguidance

            from clinicflow.model.grammar import compile_json_grammar

            t0 = time.perf_counter()
            matcher = llguidance.LLMatcher(loaded.ll_tokenizer(), compile_json_grammar(schema))
            if matcher.is_error():
                raise ModelInputError(
                    f"the JSON schema cannot be compiled to a grammar: {matcher.get_error()}"
                )
            max_new_tokens = constrained_budget(schema, max_new_tokens, room=limit - len(prompt_ids))
            forced = list(matcher.compute_ff_tokens())[: max(max_new_tokens - 1, 0)]
            if forced and not matcher.consume_tokens(forced):
                raise RuntimeError(f"grammar rejected its own forced tokens: {matcher.get_error()}")
            grammar_s = time.perf_counter() - t0
        if on_token is not None:
            for token in forced:
                on_token(token)
        request = GenerationRequest(
            prompt_ids=prompt_ids + forced,
            max_new_tokens=max(max_new_tokens - len(forced), 1),
            matcher=matcher,
            temperature=self.temperature,
            stop_strings=tuple(stop or ()),
            on_token=on_token,
            pixel_values=pixel_values,
        )
        scheduler = loaded.scheduler(max_batch=self.max_batch, window_s=self.batch_window_ms / 1000)
        output = scheduler.generate(request)
        generated = output.tokens
        new_ids = forced + generated
        finish_reason = "length"
        if new_ids and new_ids[-1] in loaded.stop_ids:
            new_ids = new_ids[:-1]
            finish_reason = "stop"
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        for s in stop or []:
            if s in text:
                text, finish_reason = text[: text.index(s)], "stop"
        stats: dict[str, Any] = {
            "input_tokens": len(prompt_ids),
            "output_tokens": len(forced) + len(generated),
            "images": len(images),
            "finish_reason": finish_reason,
            "constrained": matcher is not None,
            "forced_tokens": len(forced),
            "token_budget": max_new_tokens,
            "generation_s": round(output.generation_s, 3),
            "grammar_setup_s": round(grammar_s, 3),
            "tokens_per_s": round(len(generated) / output.generation_s, 2)
            if output.generation_s > 0
            else None,
            "batch_size": output.batch_size,
            "prefix_tokens_reused": output.prefix_tokens_reused,
            "device": loaded.device,
        }
        if output.grammar_error:
            stats["grammar_error"] = output.grammar_error
        return text, stats


def constrained_budget(schema: dict[str, Any], requested: int, *, room: int) -> int:
    """Tokens a constrained reply may take: enough for the longest value the schema admits (a token is at
    least one byte), so the budget never cuts a call into invalid JSON, within the context's `room`."""
    bound = max_json_bytes(schema)
    if bound is None:
        return requested
    return max(requested, min(bound + 1, room))  # + 1: the stop token


class _IncrementalText:
    """Decodes a growing list of token ids into text deltas, holding back half-formed characters."""

    def __init__(self, tokenizer: Any, stop_ids: list[int], stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_ids)
        self.stop = stop
        self.ids: list[int] = []
        self.emitted = ""
        self.done = False

    def add(self, token: int) -> str:
        """The new text after `token` (empty while a character or a stop string is incomplete)."""
        if self.done or token in self.stop_ids:
            self.done = True
            return ""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        for s in self.stop:
            if s in text:
                text, self.done = text[: text.index(s)], True
        if not self.done and self.stop:
            hold = max((len(s) - 1 for s in self.stop), default=0)
            text = text[: max(len(text) - hold, len(self.emitted))]
        delta = text[len(self.emitted) :] if text.startswith(self.emitted) else ""
        self.emitted += delta
        return delta


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError as exc:
        raise ModelDependencyError(
            f"the transformers backend needs {name}: pip install torch transformers accelerate llguidance"
        ) from exc


def _load(
    folder: Path, device: str, dtype: str, quantization: Quantization, options: EngineOptions
) -> LoadedModel:
    torch = _import("torch")
    _import("transformers")
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    started = time.perf_counter()
    processor = None
    try:
        multimodal = _is_gemma3_multimodal(AutoConfig.from_pretrained(str(folder)))
        if multimodal:
            processor = AutoProcessor.from_pretrained(str(folder))
            tokenizer = processor.tokenizer
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        auto_class = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
        model = auto_class.from_pretrained(
            str(folder),
            dtype=getattr(torch, dtype),
            device_map=device if device.startswith("cuda") else None,
        )
    except Exception as exc:
        raise ModelLoadError(f"could not load the model in {folder}: {exc}") from exc
    if processor is not None:
        _check_processor(folder, processor, model.config)
    if not device.startswith("cuda"):
        model = model.to(device)  # type: ignore[arg-type]
    model.eval()
    if quantization != "none":
        from clinicflow.model.engine import quantize_for_cpu

        model = quantize_for_cpu(model, quantization)
    text_config = model.config.get_text_config()
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else GEMMA3_CHAT_TEMPLATE
    return LoadedModel(
        path=str(folder),
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        stop_ids=_stop_ids(model, tokenizer),
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        chat_template=template,
        bos_token=tokenizer.bos_token or "",
        load_s=round(time.perf_counter() - started, 2),
        context_length=int(getattr(text_config, "max_position_embeddings", None) or 8192),
        quantization=quantization,
        options=options,
        processor=processor,
        image_token_id=model.config.image_token_id if processor is not None else None,
    )


def _is_gemma3_multimodal(config: Any) -> bool:
    """True for a Gemma 3 image-text config (MedGemma 4B-it), not for a text-only Gemma 3."""
    is_gemma3 = getattr(config, "model_type", None) == "gemma3"
    return is_gemma3 and getattr(config, "vision_config", None) is not None


def _check_processor(folder: Path, processor: Any, config: Any) -> None:
    """Raise ModelLoadError unless the processor writes the image tokens the model replaces."""
    if not getattr(processor, "boi_token", None) or not getattr(processor, "image_seq_length", None):
        raise ModelLoadError(
            f"the Gemma 3 multimodal model in {folder} needs a Gemma 3 processor, not "
            f"{type(processor).__name__}; add its processor and preprocessor config files"
        )
    token_id = processor.tokenizer.image_token_id
    if token_id != config.image_token_id or processor.image_seq_length != config.mm_tokens_per_image:
        raise ModelLoadError(
            f"the processor and the model in {folder} disagree on images: image token {token_id} and "
            f"{processor.image_seq_length} tokens per image vs the model's {config.image_token_id} and "
            f"{config.mm_tokens_per_image}"
        )


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = list(configured) if isinstance(configured, list | tuple) else [configured]
    ids.append(tokenizer.eos_token_id)
    end_of_turn = tokenizer.convert_tokens_to_ids(_END_OF_TURN)
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.append(end_of_turn)
    return sorted({i for i in ids if isinstance(i, int)})
