"""LoRA fine-tuning of a Gemma 3 model on chat-format JSONL (`clinicflow model train`).

The examples are read and tokenized by `clinicflow.model.training_examples`: each assistant turn and
the `<end_of_turn>` that closes it carry the loss. Logits are computed only at the positions that carry
loss (`logits_to_keep`), which spares the 262k-vocabulary head over the prompt.

Deterministic per seed (example order, LoRA init, dropout); checkpoints under `<out>/checkpoints/` hold the
adapter, optimizer and position, so a rerun with the same arguments resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clinicflow.model.errors import ModelDependencyError, ModelLoadError
from clinicflow.model.training_examples import (
    END_OF_TURN,
    Example,
    TrainingDataError,
    encode_example,
    read_examples,
)

__all__ = [
    "END_OF_TURN",
    "Example",
    "TrainConfig",
    "TrainResult",
    "TrainingDataError",
    "encode_example",
    "read_examples",
    "train_lora",
]

_CHECKPOINTS = "checkpoints"
_CONFIG_FILE = "train_config.json"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the result; saved beside the adapter and compared on resume."""

    base_model: str
    train_files: tuple[str, ...]
    val_files: tuple[str, ...] = ()
    seed: int = 0
    epochs: float = 1.0
    learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    grad_accum: int = 4
    max_tokens: int = 1024
    warmup_steps: int = 10
    max_val_examples: int | None = 30
    """Validation loss is the mean over the first this many validation examples that fit (None: all)."""
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 50
    merge: bool = False
    stop_after_steps: int | None = None
    """End the run after this many optimizer steps; the schedule stays that of all `epochs`."""
    init_adapter: str | None = None
    """A LoRA adapter folder (same rank, every linear layer) to start from instead of fresh weights."""


@dataclass
class TrainResult:
    """What a run did: sizes, losses, time."""

    out_dir: Path
    examples: int
    skipped_too_long: int
    val_examples: int
    optimizer_steps: int
    target_tokens: int
    first_loss: float | None
    last_loss: float | None
    val_loss_before: float | None
    val_loss_after: float | None
    seconds: float
    losses: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


def _import_peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise ModelDependencyError(f"training needs peft ({exc}); pip install peft") from None
    return peft


def _loss(model: Any, example: Example, device: Any) -> Any:
    """Mean cross-entropy over the example's target tokens, with logits only where loss is taken."""
    import torch

    ids = torch.tensor([example.input_ids], device=device)
    # The logit at position p predicts token p + 1: keep positions whose next token is a target.
    keep = [p for p in range(len(example.input_ids) - 1) if example.target[p + 1]]
    index = torch.tensor(keep, device=device)
    logits = model(input_ids=ids, logits_to_keep=index, use_cache=False).logits[0]
    labels = torch.tensor([example.input_ids[p + 1] for p in keep], device=device)
    return torch.nn.functional.cross_entropy(logits.float(), labels)


def _mean_loss(model: Any, examples: Sequence[Example], device: Any) -> float | None:
    import torch

    if not examples:
        return None
    model.eval()
    total = 0.0
    with torch.no_grad():
        for ex in examples:
            total += float(_loss(model, ex, device))
    model.train()
    return total / len(examples)


def _latest_checkpoint(out_dir: Path) -> Path | None:
    folder = out_dir / _CHECKPOINTS
    steps = sorted(
        (int(p.name.split("-", 1)[1]), p)
        for p in folder.glob("step-*")
        if p.is_dir() and (p / "state.pt").is_file()
    )
    return steps[-1][1] if steps else None


def _order(n: int, epochs: float, seed: int) -> list[int]:
    """Example indices for the whole run: each epoch a fresh seeded shuffle, a partial last epoch cut."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(math.ceil(epochs)):
        epoch = list(range(n))
        rng.shuffle(epoch)
        order += epoch
    return order[: max(1, round(n * epochs))]


@dataclass
class _Run:
    """What a checkpoint holds: the model under training, its optimizer and schedule, and how far it got."""

    model: Any
    optimizer: Any
    scheduler: Any
    position: int = 0
    """Examples of the run's order done."""
    losses: list[float] = field(default_factory=list)
    """The loss of each optimizer step so far."""
    val_before: float | None = None


def train_lora(
    config: TrainConfig,
    out_dir: Path,
    *,
    device: str | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on the config's files and save it (or merged weights) in `out_dir`."""
    import torch

    peft = _import_peft()
    started = time.perf_counter()
    _claim_out_dir(config, out_dir)
    tokenizer, train, val, skipped = _examples(config)
    torch.manual_seed(config.seed)
    target_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = _lora_model(config, target_device, peft)
    order = _order(len(train), config.epochs, config.seed)
    run = _Run(model, *_optimizer(model, config, total_steps=math.ceil(len(order) / config.grad_accum)))
    _resume(run, out_dir, val, target_device, peft)
    _train(run, config, [train[i] for i in order], out_dir, target_device, peft, progress, on_step)
    val_after = _mean_loss(model, val, target_device)
    _save_output(model, tokenizer, out_dir, merge=config.merge)
    losses = run.losses
    result = TrainResult(
        out_dir=out_dir,
        examples=len(train),
        skipped_too_long=skipped,
        val_examples=len(val),
        optimizer_steps=len(losses),
        target_tokens=sum(train[i].n_target for i in order[: run.position]),
        first_loss=losses[0] if losses else None,
        last_loss=sum(losses[-10:]) / len(losses[-10:]) if losses else None,
        val_loss_before=run.val_before,
        val_loss_after=val_after,
        seconds=time.perf_counter() - started,
        losses=losses,
    )
    (out_dir / "train_result.json").write_text(json.dumps(result.to_json(), indent=2))
    return result


def _claim_out_dir(config: TrainConfig, out_dir: Path) -> None:
    """Make `out_dir` this config's: refuse one that holds a run with other settings.

    `stop_after_steps` may differ: it ends a run without changing its schedule, so a run stopped early
    resumes to a later stop or to its end."""
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = out_dir / _CONFIG_FILE
    wanted = json.loads(json.dumps(asdict(config)))
    if saved.is_file():
        previous = json.loads(saved.read_text())
        changed = sorted(k for k in wanted if k != "stop_after_steps" and previous.get(k) != wanted[k])
        if changed:
            raise TrainingDataError(
                f"{out_dir} holds a run with other settings ({', '.join(changed)}); use another --out"
            )
    saved.write_text(json.dumps(wanted, indent=2))


def _examples(config: TrainConfig) -> tuple[Any, list[Example], list[Example], int]:
    """The base model's tokenizer, the training and validation examples that fit, and how many did not."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    except OSError as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {config.base_model}: {exc}") from None
    train_items = read_examples(Path(p) for p in config.train_files)
    val_items = read_examples(Path(p) for p in config.val_files)
    encoded = [encode_example(tokenizer, item) for item in train_items]
    train = [e for e in encoded if len(e.input_ids) <= config.max_tokens and e.n_target]
    val = [
        e for e in (encode_example(tokenizer, i) for i in val_items) if len(e.input_ids) <= config.max_tokens
    ][: config.max_val_examples]
    if not train:
        raise TrainingDataError(f"no example fits in {config.max_tokens} tokens")
    return tokenizer, train, val, len(encoded) - len(train)


def _lora_model(config: TrainConfig, device: Any, peft: Any) -> Any:
    """The base model on `device` with fresh LoRA adapters on every linear layer."""
    import torch
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=getattr(torch, config.dtype))
    model = model.to(device)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = peft.LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(model, lora)
    if config.init_adapter is not None:
        _load_adapter_weights(model, Path(config.init_adapter), peft)
    return model


def _load_adapter_weights(model: Any, folder: Path, peft: Any) -> None:
    """Start from a saved adapter's weights; refuse one whose weights do not all fit this model."""
    from safetensors.torch import load_file

    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise TrainingDataError(f"--init-adapter {folder}: no adapter_model.safetensors there")
    saved = load_file(str(weights))
    try:
        result = peft.set_peft_model_state_dict(model, saved)
    except RuntimeError as exc:  # shapes differ: another rank or base model
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        message = f"--init-adapter {folder} does not fit (rank and layers must match): {first}"
        raise TrainingDataError(message) from None
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    fresh = [k for k in getattr(result, "missing_keys", []) or [] if "lora_" in k]
    if unexpected or fresh:
        raise TrainingDataError(
            f"--init-adapter {folder} does not fit (rank and layers must match): "
            f"{len(unexpected)} unexpected and {len(fresh)} missing LoRA weights"
        )


def _optimizer(model: Any, config: TrainConfig, *, total_steps: int) -> tuple[Any, Any]:
    """AdamW over the trainable weights, and its schedule: linear warmup, then cosine decay to zero."""
    import torch

    optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), lr=config.learning_rate)

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress_ = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)


def _resume(run: _Run, out_dir: Path, val: Sequence[Example], device: Any, peft: Any) -> None:
    """Continue from the latest checkpoint in `out_dir`, or start: measure the validation loss first."""
    import torch

    checkpoint = _latest_checkpoint(out_dir)
    if checkpoint is None:
        run.val_before = _mean_loss(run.model, val, device)
        return
    state = torch.load(checkpoint / "state.pt", weights_only=False)
    peft.set_peft_model_state_dict(run.model, state["adapter"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    run.position, run.losses, run.val_before = state["position"], state["losses"], state["val_before"]


def _train(
    run: _Run,
    config: TrainConfig,
    examples: Sequence[Example],
    out_dir: Path,
    device: Any,
    peft: Any,
    progress: bool,
    on_step: Callable[[int, float], None] | None,
) -> None:
    """The optimizer steps from `run.position` to the end of `examples` (the run's order), checkpointing."""
    import torch
    from tqdm import tqdm

    run.model.train()
    total = len(examples)
    bar = tqdm(total=total, initial=run.position, desc="Training", unit="example", disable=not progress)
    window: list[float] = []
    stop_at = config.stop_after_steps
    while run.position < len(examples) and (stop_at is None or len(run.losses) < stop_at):
        batch = examples[run.position : run.position + config.grad_accum]
        run.optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for example in batch:
            loss = _loss(run.model, example, device) / len(batch)
            loss.backward()
            step_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
        run.optimizer.step()
        run.scheduler.step()
        run.position += len(batch)
        run.losses.append(step_loss)
        window = [*window[-9:], step_loss]
        bar.update(len(batch))
        bar.set_postfix(loss=f"{sum(window) / len(window):.3f}")
        if on_step is not None:
            on_step(len(run.losses), step_loss)
        if (
            len(run.losses) % config.checkpoint_every == 0
            or run.position >= len(examples)
            or stop_at == len(run.losses)
        ):
            _save_checkpoint(out_dir, run, peft)
    bar.close()


def _save_checkpoint(out_dir: Path, run: _Run, peft: Any) -> None:
    import torch

    step = len(run.losses)
    folder = out_dir / _CHECKPOINTS
    work = folder / f".step-{step}.tmp"
    work.mkdir(parents=True, exist_ok=True)
    state = {
        "adapter": peft.get_peft_model_state_dict(run.model),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "position": run.position,
        "losses": run.losses,
        "val_before": run.val_before,
    }
    torch.save(state, work / "state.pt")
    final = folder / f"step-{step}"
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    for old in folder.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _save_output(model: Any, tokenizer: Any, out_dir: Path, *, merge: bool) -> None:
    """The adapter folder (`adapter/`), or with `merge` a full model folder (`merged/`)."""
    if merge:
        merged = model.merge_and_unload()
        merged.save_pretrained(out_dir / "merged")
        tokenizer.save_pretrained(out_dir / "merged")
    else:
        model.save_pretrained(out_dir / "adapter")
