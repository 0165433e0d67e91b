"""LoRA fine-tuning of a Gemma 3 model on chat-format JSONL (`clinicflow model train`).

Each line is `{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...], "metadata": {...}}`,
the format `evals/ehrqa/export.py` writes. Every assistant turn is a target: its tokens and the
`<end_of_turn>` that closes it carry the loss; system, user and tool-result turns carry none. The text is
rendered with the same Gemma 3 template the backend uses at inference, so the model learns exactly what it
will be asked to continue. Logits are computed only at the positions that carry loss (`logits_to_keep`),
which spares the 262k-vocabulary head over the prompt.

Deterministic per seed (example order, LoRA init, dropout); checkpoints under `<out>/checkpoints/` hold the
adapter, optimizer and position, so a rerun with the same arguments resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clinicflow.model.errors import ModelDependencyError, ModelLoadError
from clinicflow.model.prompting import render_chat

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

END_OF_TURN = "<end_of_turn>"
_ROLES = {"system", "user", "assistant"}
_CHECKPOINTS = "checkpoints"
_CONFIG_FILE = "train_config.json"


class TrainingDataError(ValueError):
    """A training file or line that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    """One tokenized example: input ids and, per position, whether that token is a target."""

    input_ids: list[int]
    target: list[bool]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_target(self) -> int:
        return sum(self.target)


def read_examples(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The examples of JSONL files, each checked for roles and at least one assistant turn."""
    out: list[dict[str, Any]] = []
    for path in paths:
        if not path.is_file():
            raise TrainingDataError(f"no such training file: {path}")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingDataError(f"{where}: not JSON ({exc.msg})") from None
            messages = item.get("messages") if isinstance(item, dict) else None
            if not isinstance(messages, list) or not messages:
                raise TrainingDataError(f'{where}: expected {{"messages": [...]}} with at least one turn')
            for turn in messages:
                if not isinstance(turn, dict) or turn.get("role") not in _ROLES:
                    raise TrainingDataError(f"{where}: each turn needs a role of {sorted(_ROLES)}")
                if not isinstance(turn.get("content"), str):
                    raise TrainingDataError(f"{where}: each turn needs string content")
            if not any(t["role"] == "assistant" for t in messages):
                raise TrainingDataError(f"{where}: no assistant turn, so nothing to learn")
            out.append({"messages": messages, "metadata": item.get("metadata") or {}})
    return out


def encode_example(tokenizer: Any, item: Mapping[str, Any], template: str | None = None) -> Example:
    """Tokenize one example with the chat template; mark each assistant turn's tokens and its end marker.

    The target span of an assistant turn is found as text: the render of the turns before it with the
    generation prompt is a prefix of the render that includes it, and what follows up to and including
    `<end_of_turn>` is what the model must write. Token offsets map those spans onto tokens.
    """
    turns = list(item["messages"])
    spans: list[tuple[int, int]] = []
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        before = render_chat(turns[:i], template, add_generation_prompt=True)
        upto = render_chat(turns[: i + 1], template, add_generation_prompt=False)
        if not upto.startswith(before):
            raise TrainingDataError("the chat template does not render turns as a growing prefix")
        end = upto.find(END_OF_TURN, len(before))
        if end < 0:
            raise TrainingDataError("the chat template closed no assistant turn with <end_of_turn>")
        spans.append((len(before), end + len(END_OF_TURN)))
    text = render_chat(turns, template, add_generation_prompt=False)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    target = [
        any(start >= a and end <= b and end > start for a, b in spans)
        for start, end in encoded["offset_mapping"]
    ]
    return Example(input_ids=ids, target=target, metadata=dict(item.get("metadata") or {}))


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
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 50
    merge: bool = False


@dataclass
class TrainResult:
    """What a run did: sizes, losses, time."""

    out_dir: Path
    examples: int
    skipped_too_long: int
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
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    peft = _import_peft()
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = out_dir / _CONFIG_FILE
    wanted = asdict(config)
    if saved.is_file():
        previous = json.loads(saved.read_text())
        if previous != json.loads(json.dumps(wanted)):
            changed = sorted(k for k in wanted if previous.get(k) != json.loads(json.dumps(wanted))[k])
            raise TrainingDataError(
                f"{out_dir} holds a run with other settings ({', '.join(changed)}); use another --out"
            )
    saved.write_text(json.dumps(wanted, indent=2))

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    except OSError as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {config.base_model}: {exc}") from None
    train_items = read_examples(Path(p) for p in config.train_files)
    val_items = read_examples(Path(p) for p in config.val_files)
    encoded = [encode_example(tokenizer, item) for item in train_items]
    train = [e for e in encoded if len(e.input_ids) <= config.max_tokens and e.n_target]
    skipped = len(encoded) - len(train)
    val = [
        e for e in (encode_example(tokenizer, i) for i in val_items) if len(e.input_ids) <= config.max_tokens
    ]
    if not train:
        raise TrainingDataError(f"no example fits in {config.max_tokens} tokens")

    torch.manual_seed(config.seed)
    dtype = getattr(torch, config.dtype)
    target_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model: Any = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=dtype)
    model = model.to(target_device)
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
    optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), lr=config.learning_rate)
    order = _order(len(train), config.epochs, config.seed)
    total_steps = math.ceil(len(order) / config.grad_accum)

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress_ = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    position, losses, val_before = 0, [], None
    checkpoint = _latest_checkpoint(out_dir)
    if checkpoint is not None:
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        peft.set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        position, losses, val_before = state["position"], state["losses"], state["val_before"]
    else:
        val_before = _mean_loss(model, val, target_device)

    model.train()
    bar = tqdm(total=len(order), initial=position, desc="Training", unit="example", disable=not progress)
    window: list[float] = []
    while position < len(order):
        batch = order[position : position + config.grad_accum]
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for index in batch:
            loss = _loss(model, train[index], target_device) / len(batch)
            loss.backward()
            step_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        position += len(batch)
        losses.append(step_loss)
        window = [*window[-9:], step_loss]
        bar.update(len(batch))
        bar.set_postfix(loss=f"{sum(window) / len(window):.3f}")
        if on_step is not None:
            on_step(len(losses), step_loss)
        if len(losses) % config.checkpoint_every == 0 or position >= len(order):
            _save_checkpoint(
                out_dir, len(losses), model, optimizer, scheduler, position, losses, val_before, peft
            )
    bar.close()

    val_after = _mean_loss(model, val, target_device)
    _save_output(model, tokenizer, out_dir, merge=config.merge)
    result = TrainResult(
        out_dir=out_dir,
        examples=len(train),
        skipped_too_long=skipped,
        optimizer_steps=len(losses),
        target_tokens=sum(train[i].n_target for i in order),
        first_loss=losses[0] if losses else None,
        last_loss=sum(losses[-10:]) / len(losses[-10:]) if losses else None,
        val_loss_before=val_before,
        val_loss_after=val_after,
        seconds=time.perf_counter() - started,
        losses=losses,
    )
    (out_dir / "train_result.json").write_text(json.dumps(result.to_json(), indent=2))
    return result


def _save_checkpoint(
    out_dir: Path,
    step: int,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    position: int,
    losses: list[float],
    val_before: float | None,
    peft: Any,
) -> None:
    import torch

    folder = out_dir / _CHECKPOINTS
    work = folder / f".step-{step}.tmp"
    work.mkdir(parents=True, exist_ok=True)
    state = {
        "adapter": peft.get_peft_model_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "position": position,
        "losses": losses,
        "val_before": val_before,
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
