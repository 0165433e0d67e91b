"""In-process backend: a Hugging Face model folder run with transformers, CUDA when present, else CPU.

Serves the CPU default (Gemma 3 270M) and MedGemma 27B text-it / 4B-it (text only for now) from a
local folder. Each folder is loaded once per process and shared by every `TransformersChatModel` on
it; `generate` runs under a per-model lock, so concurrent graph runs take turns. When a tool call is
required (`tool_choice` `any` or a tool name), decoding is constrained by the JSON schema of the
bound tools' calls (see `clinicflow.model.grammar`), so the reply always parses as a call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import ConfigDict

from clinicflow.model.base import PromptToolChatModel
from clinicflow.model.errors import ModelDependencyError, ModelLoadError, ModelNotFoundError
from clinicflow.model.prompting import GEMMA3_CHAT_TEMPLATE, chat_turns, render_chat
from clinicflow.model.tool_calls import ToolSpec, allowed_tools, call_json_schema, tool_prompt

__all__ = ["LoadedModel", "TransformersChatModel", "check_model_folder", "load_model_folder"]

_END_OF_TURN = "<end_of_turn>"
_cache: dict[tuple[str, str, str], LoadedModel] = {}
_cache_lock = threading.Lock()


@dataclass
class LoadedModel:
    """A model and tokenizer in memory, shared by every chat model on the same folder and device."""

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
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ll_tokenizer: Any = field(default=None, repr=False)
    _ll_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
    path: str | Path, *, device: str | None = None, dtype: str = "auto", shared: bool = True
) -> LoadedModel:
    """Load a model folder, or return the copy this process already loaded with the same device and dtype.

    `shared=False` always loads a private copy.
    """
    folder = check_model_folder(path)
    torch = _import("torch")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if not shared:
        return _load(folder, device, dtype)
    key = (str(folder), device, dtype)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _load(folder, device, dtype)
        return _cache[key]


class TransformersChatModel(PromptToolChatModel):
    """Chat model on a local Hugging Face folder (Gemma 3 270M by default, or MedGemma), greedy by default."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    """A Hugging Face model folder (config.json, weights, tokenizer)."""
    device: str | None = None
    """torch device; default cuda when present, else cpu."""
    dtype: str = "auto"
    """torch dtype name; `auto` is bfloat16 on CUDA and float32 on CPU (faster than bf16 on most CPUs)."""
    temperature: float = 0.0
    """0 decodes greedily; above 0 samples."""
    max_string_length: int | None = 200
    """Longest free string a constrained tool call may hold, so a small model cannot ramble to the limit."""
    max_array_items: int | None = None
    """Longest list a constrained tool call may hold (unbounded when None)."""
    cpu_threads: int | None = None
    """torch CPU threads for the whole process, set at load; 1 is ~3x faster on an oversubscribed CPU."""

    @property
    def _llm_type(self) -> str:
        return "clinicflow-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "device": self.device, "dtype": self.dtype}

    def load(self) -> LoadedModel:
        """The loaded model (loads it on first use; later calls and other instances share it)."""
        if self.cpu_threads:
            _import("torch").set_num_threads(self.cpu_threads)
        return load_model_folder(self.model_path, device=self.device, dtype=self.dtype)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        loaded = self.load()
        specs, choice = self._tool_setup(kwargs)
        prompt = render_chat(
            chat_turns(messages, tool_prompt(specs, choice)), loaded.chat_template, bos_token=loaded.bos_token
        )
        max_new_tokens = int(kwargs.get("max_new_tokens") or self.max_new_tokens)
        text, stats = self._complete(loaded, prompt, specs, choice, stop, max_new_tokens)
        return self._result(
            text,
            specs,
            choice,
            truncated=stats["finish_reason"] == "length",
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

    def _complete(
        self,
        loaded: LoadedModel,
        prompt: str,
        specs: list[ToolSpec],
        choice: str,
        stop: list[str] | None,
        max_new_tokens: int,
    ) -> tuple[str, dict[str, Any]]:
        """Generate a reply to the prompt text: the text and its statistics."""
        torch = _import("torch")
        from transformers import GenerationConfig

        tokenizer = loaded.tokenizer
        prompt_ids: list[int] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        forced: list[int] = []
        processors = []
        grammar_s = 0.0
        processor = None
        if specs and choice not in ("auto", "none"):
            import llguidance

            from clinicflow.model.grammar import GrammarLogitsProcessor, compile_json_grammar

            t0 = time.perf_counter()
            schema = call_json_schema(
                allowed_tools(specs, choice),
                max_string_length=self.max_string_length,
                max_items=self.max_array_items,
            )
            matcher = llguidance.LLMatcher(loaded.ll_tokenizer(), compile_json_grammar(schema))
            if matcher.is_error():
                raise ValueError(f"the tool schema cannot be compiled to a grammar: {matcher.get_error()}")
            forced = list(matcher.compute_ff_tokens())[: max(max_new_tokens - 1, 0)]
            if forced and not matcher.consume_tokens(forced):
                raise RuntimeError(f"grammar rejected its own forced tokens: {matcher.get_error()}")
            processor = GrammarLogitsProcessor(matcher, len(prompt_ids) + len(forced), loaded.stop_ids)
            processors.append(processor)
            grammar_s = time.perf_counter() - t0

        config = GenerationConfig(
            max_new_tokens=max(max_new_tokens - len(forced), 1),
            do_sample=self.temperature > 0,
            temperature=self.temperature if self.temperature > 0 else None,
            top_p=None,
            top_k=None,
            eos_token_id=loaded.stop_ids,
            pad_token_id=loaded.pad_id,
        )
        input_ids = torch.tensor([prompt_ids + forced], device=loaded.model.device)
        extra: dict[str, Any] = {"stop_strings": stop, "tokenizer": tokenizer} if stop else {}
        t0 = time.perf_counter()
        with loaded.lock, torch.inference_mode():
            output = loaded.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                logits_processor=processors or None,
                **extra,
            )
        generation_s = time.perf_counter() - t0
        generated = output[0, input_ids.shape[1] :].tolist()
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
            "finish_reason": finish_reason,
            "constrained": processor is not None,
            "forced_tokens": len(forced),
            "generation_s": round(generation_s, 3),
            "grammar_setup_s": round(grammar_s, 3),
            "tokens_per_s": round(len(generated) / generation_s, 2) if generation_s > 0 else None,
            "device": loaded.device,
        }
        if processor is not None and processor.error:
            stats["grammar_error"] = processor.error
        return text, stats


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError as exc:
        raise ModelDependencyError(
            f"the transformers backend needs {name}: pip install torch transformers accelerate llguidance"
        ) from exc


def _load(folder: Path, device: str, dtype: str) -> LoadedModel:
    torch = _import("torch")
    _import("transformers")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(
            str(folder),
            dtype=getattr(torch, dtype),
            device_map=device if device.startswith("cuda") else None,
        )
    except Exception as exc:
        raise ModelLoadError(f"could not load the model in {folder}: {exc}") from exc
    if not device.startswith("cuda"):
        model = model.to(device)  # type: ignore[arg-type]
    model.eval()
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
    )


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = list(configured) if isinstance(configured, list | tuple) else [configured]
    ids.append(tokenizer.eos_token_id)
    end_of_turn = tokenizer.convert_tokens_to_ids(_END_OF_TURN)
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.append(end_of_turn)
    return sorted({i for i in ids if isinstance(i, int)})
