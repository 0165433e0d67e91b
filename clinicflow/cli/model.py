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
) -> None:
    """Serve a local model as an OpenAI-compatible /v1/chat/completions endpoint until Ctrl-C."""
    import uvicorn

    from clinicflow.model.server import create_app

    settings = _settings()
    try:
        chat_model = load_chat_model(settings.model_copy(update={"model_url": None}), model=model)
    except ModelError as exc:
        raise _fail(str(exc)) from None
    served_as = name or getattr(chat_model, "model_path", "model").rstrip("/").rsplit("/", 1)[-1]
    typer.echo(f"Serving {served_as} at http://{host}:{port}/v1 (point --model-url here); Ctrl-C to stop.")
    uvicorn.run(create_app(chat_model, served_as), host=host, port=port, log_level="warning")
