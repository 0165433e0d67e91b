"""`clinicflow model`: prepare the CPU default model, try a model from the shell, serve one over HTTP.

Exit codes: 0 success; 2 the model cannot be found, loaded or reached.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from langchain_core.messages import HumanMessage, SystemMessage

from clinicflow.cli.options import ModelOpt, ModelUrlOpt
from clinicflow.model import ModelError, ensure_default_model, load_chat_model
from clinicflow.settings import Settings

__all__ = ["model_app"]

model_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Local model hosting: prepare, try and serve a chat model.",
)


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


@model_app.command()
def train(
    train_files: Annotated[
        list[Path],
        typer.Argument(help="Chat-format JSONL files to train on (as `eval ehrqa --export` writes)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder; rerun into it to resume.")],
    base: Annotated[
        str | None, typer.Option("--base", help="Base model folder (default: the converted Gemma 3 270M).")
    ] = None,
    val: Annotated[
        list[Path] | None, typer.Option("--val", help="Held-out JSONL for validation loss.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for example order, LoRA init and dropout.")] = 0,
    epochs: Annotated[float, typer.Option(min=0.01, help="Passes over the data (may be fractional).")] = 1.0,
    learning_rate: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate.")] = 2e-4,
    lora_r: Annotated[int, typer.Option("--lora-r", min=1, help="LoRA rank.")] = 16,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1, help="Examples per optimizer step.")] = 4,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=16, help="Skip examples longer than this (never cut them).")
    ] = 1024,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16 (bf16 on a GPU).")] = "float32",
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", help="Recompute activations (large models).")
    ] = False,
    merge: Annotated[
        bool, typer.Option("--merge", help="Write merged weights instead of the adapter.")
    ] = False,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
    stop_after: Annotated[
        int | None,
        typer.Option(
            "--stop-after", min=1, help="Stop after N optimizer steps (the schedule stays the same)."
        ),
    ] = None,
    init_adapter: Annotated[
        Path | None,
        typer.Option("--init-adapter", help="Start from this LoRA adapter folder instead of fresh weights."),
    ] = None,
) -> None:
    """LoRA-tune a Gemma 3 model on chat JSONL: loss on assistant turns only, resumable, seeded."""
    import json

    from clinicflow.model.errors import ModelError
    from clinicflow.model.training import TrainConfig, TrainingDataError, train_lora

    if dtype not in ("float32", "bfloat16"):
        raise _fail(f"--dtype must be float32 or bfloat16, not {dtype!r}")
    try:
        base_model = base or str(ensure_default_model(_settings().cache_dir))
        config = TrainConfig(
            base_model=base_model,
            train_files=tuple(str(p) for p in train_files),
            val_files=tuple(str(p) for p in val or ()),
            seed=seed,
            epochs=epochs,
            learning_rate=learning_rate,
            lora_r=lora_r,
            lora_alpha=2 * lora_r,
            grad_accum=grad_accum,
            max_tokens=max_tokens,
            dtype=dtype,
            gradient_checkpointing=gradient_checkpointing,
            merge=merge,
            stop_after_steps=stop_after,
            init_adapter=str(init_adapter) if init_adapter is not None else None,
        )
        result = train_lora(config, out, device=device)
    except (TrainingDataError, ModelError) as exc:
        raise _fail(str(exc)) from None
    summary = {k: v for k, v in result.to_json().items() if k != "losses"}
    typer.echo(json.dumps(summary, indent=2))


RESERVED_SEEDS = {42: "the demo and test cohort", 2002: "the held-out evaluation cohort of the model card"}
"""Cohort seeds training data may not use: the patients they generate are evaluated."""


@model_app.command("make-data")
def make_data(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for cohort/, train.jsonl, val.jsonl, stats.json.")
    ],
    seed: Annotated[int, typer.Option(help="Cohort and question seed (not one an evaluation uses).")] = 1001,
    patients: Annotated[int, typer.Option(min=2, help="Synthetic patients to generate.")] = 16,
    per_patient: Annotated[
        int, typer.Option("--per-patient", min=1, help="EHRQA questions per patient.")
    ] = 40,
    max_per_group: Annotated[
        int | None, typer.Option("--max-per-group", min=1, help="Most examples per role and category.")
    ] = None,
    roles: Annotated[
        str, typer.Option(help="Comma-separated roles to keep: planner, extractor, answerer.")
    ] = "planner,extractor,answerer",
    spread: Annotated[
        bool,
        typer.Option(
            "--spread", help="Draw each role and category's examples evenly over its question types."
        ),
    ] = False,
) -> None:
    """Make EHRQA fine-tuning data from a fresh PySynthea cohort: gold planner, extractor, answerer turns."""
    import asyncio
    import json

    from clinicflow.evals.training_data import build_ehrqa_data
    from clinicflow.fhir.cohort import generate_cohort

    if seed in RESERVED_SEEDS:
        raise _fail(
            f"seed {seed} generates {RESERVED_SEEDS[seed]}; pick another so no evaluated patient trains"
        )
    cohort = out / "cohort"
    if not any(cohort.glob("*.json")):
        generate_cohort(cohort, patients, seed)
    kept = tuple(r.strip() for r in roles.split(",") if r.strip())
    unknown = sorted(set(kept) - {"planner", "extractor", "answerer"})
    if unknown or not kept:
        raise _fail(f"--roles takes planner, extractor and answerer, not {', '.join(unknown) or 'nothing'}")
    stats = asyncio.run(
        build_ehrqa_data(
            cohort,
            out,
            seed=seed,
            per_patient=per_patient,
            max_per_group=max_per_group,
            roles=kept,
            spread=spread,
        )
    )
    typer.echo(json.dumps(stats["totals"]))
    typer.echo(f"Training data in {out} (counts per role and category in stats.json)")
