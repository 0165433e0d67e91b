"""Training examples for `clinicflow model train`: chat-format JSONL read, checked and tokenized.

Each line is `{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...], "metadata": {...}}`,
the format `evals/ehrqa/export.py` writes. Every assistant turn is a target: its tokens and the
`<end_of_turn>` that closes it carry the loss; system, user and tool-result turns carry none. The text is
rendered with the same Gemma 3 template the backend uses at inference, so the model learns exactly what it
will be asked to continue.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinicflow.model.prompting import render_chat

__all__ = ["END_OF_TURN", "Example", "TrainingDataError", "encode_example", "read_examples"]

END_OF_TURN = "<end_of_turn>"
_ROLES = {"system", "user", "assistant"}


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
