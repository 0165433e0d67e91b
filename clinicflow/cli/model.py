"""`clinicflow model`: prepare the CPU default model, try a model from the shell, serve one over HTTP.

Exit codes: 0 success; 2 the model cannot be found, loaded or reached.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from langchain_core.messages import HumanMessage, SystemMessage

from clinicflow.model import ModelError, ensure_default_model, load_chat_model
from clinicflow.settings import Settings

__all__ = ["model_app"]

model_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Local model hosting: prepare, try and serve a chat model.",
)

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="Local model folder (MedGemma); default: CLINICFLOW_MODEL, else 270M."),
]
ModelUrlOpt = Annotated[
    str | None, typer.Option("--model-url", help="OpenAI-compatible base URL (vLLM, llama-server, ...).")
]


def _settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # fields come from the environment (pydantic-settings)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@model_app.command()
def prepare() -> None:
    """Convert the packaged Gemma 3 270M GGUF into the cache dir once (later runs reuse it)."""
    started = time.perf_counter()
    try:
        folder = ensure_default_model(_settings().cache_dir)
    except ModelError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Gemma 3 270M ready in {folder} ({time.perf_counter() - started:.1f} s)")


@model_app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="What to ask the model.")],
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest reply, in tokens.")] = 64,
    model: ModelOpt = None,
    model_url: ModelUrlOpt = None,
) -> None:
    """Send one prompt and print the reply with its token counts and timing."""
    try:
        started = time.perf_counter()
        chat_model = load_chat_model(_settings(), model=model, model_url=model_url)
        loaded_s = time.perf_counter() - started
        messages = [SystemMessage(system), HumanMessage(prompt)] if system else [HumanMessage(prompt)]
        reply = chat_model.invoke(messages, max_new_tokens=max_new_tokens)
    except ModelError as exc:
        raise _fail(str(exc)) from None
    typer.echo(reply.text)
    usage = reply.usage_metadata or {"input_tokens": 0, "output_tokens": 0}
    took = reply.response_metadata.get("generation_s")
    typer.secho(
        f"[{usage['input_tokens']} tokens in, {usage['output_tokens']} out; load {loaded_s:.1f} s, "
        f"generation {took} s]",
        fg=typer.colors.BRIGHT_BLACK,
        err=True,
    )


@model_app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    name: Annotated[
        str | None, typer.Option(help="Model name to answer as (default: the folder name).")
    ] = None,
    model: ModelOpt = None,
    max_context: Annotated[
        int | None, typer.Option(min=16, help="Refuse prompt plus reply longer than this many tokens.")
    ] = None,
    quantization: Annotated[
        str | None, typer.Option(help="CPU int8 dynamic quantization: none, int8 or int8-head.")
    ] = None,
    fast_path: Annotated[
        str | None, typer.Option(help="Static cache + compiled decode: auto (CUDA only), on or off.")
    ] = None,
    decode: Annotated[
        str | None, typer.Option(help="Decode steps by transformers generate, or own (our loop, Gemma 3).")
    ] = None,
    max_batch: Annotated[int | None, typer.Option(min=1, help="Most requests batched together.")] = None,
) -> None:
    """Serve a local model as an OpenAI-compatible /v1/chat/completions endpoint until Ctrl-C."""
    import uvicorn

    from clinicflow.model.server import create_app

    settings = _settings()
    overrides: dict[str, object] = {"model_url": None}
    options = {"quantization": quantization, "fast_path": fast_path, "decode": decode, "max_batch": max_batch}
    for key, value in options.items():
        if value is not None:
            overrides[f"model_{key}"] = value
    if quantization not in (None, "none", "int8", "int8-head"):
        raise _fail(f"--quantization must be none, int8 or int8-head, not {quantization!r}")
    if fast_path not in (None, "auto", "on", "off"):
        raise _fail(f"--fast-path must be auto, on or off, not {fast_path!r}")
    if decode not in (None, "generate", "own"):
        raise _fail(f"--decode must be generate or own, not {decode!r}")
    try:
        chat_model = load_chat_model(_Overlay(settings, overrides), model=model)  # type: ignore[arg-type]
    except (ModelError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if max_context is not None and hasattr(chat_model, "max_context_tokens"):
        chat_model.max_context_tokens = max_context
    served_as = name or getattr(chat_model, "model_path", "model").rstrip("/").rsplit("/", 1)[-1]
    typer.echo(f"Serving {served_as} at http://{host}:{port}/v1 (point --model-url here); Ctrl-C to stop.")
    uvicorn.run(create_app(chat_model, served_as), host=host, port=port, log_level="warning")


class _Overlay:
    """Settings with some attributes replaced (including fields the settings object may not define)."""

    def __init__(self, settings: Settings, overrides: dict[str, object]) -> None:
        self._settings = settings
        self._overrides = overrides

    def __getattr__(self, name: str) -> object:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._settings, name)
