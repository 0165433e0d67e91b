"""Batching of concurrent generation requests: many graph runs share one model and one `generate` call.

A `BatchScheduler` thread collects the requests that arrive within a few milliseconds of each other
and runs each group (same sampling settings and stop strings) as one left-padded batched `generate`;
requests with images (`pixel_values`) share it with text requests.
Each row keeps its own token limit (`RowLimits`), its own grammar (`BatchedGrammarProcessor`) and its
own token callback (`RowStreamer`), so a constrained call and a free reply can share a batch.
transformers' own continuous batching (`generate_batch`) takes no custom logits processors, and was
slower than a left-padded batched `generate` where it was measured.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BatchScheduler",
    "BatchedGrammarProcessor",
    "GenerationOutput",
    "GenerationRequest",
    "RowLimits",
    "RowStreamer",
    "left_pad",
]


@dataclass
class GenerationRequest:
    """One reply to generate: prompt ids (forced tokens included), its limit, grammar and token callback."""

    prompt_ids: list[int]
    max_new_tokens: int
    matcher: Any = None
    """An llguidance `LLMatcher` that already consumed the forced tokens, or None for free text."""
    temperature: float = 0.0
    stop_strings: tuple[str, ...] = ()
    on_token: Callable[[int], None] | None = None
    """Called from the scheduler thread with each new token id of this row, as it is decoded."""
    pixel_values: Any = None
    """The processor's pixel tensor of this prompt's images (one per image, in prompt order), or None."""

    def group_key(self) -> tuple[float, tuple[str, ...]]:
        """Requests with the same key can share one `generate` call."""
        return (self.temperature, self.stop_strings)


@dataclass
class GenerationOutput:
    """The new token ids of one request (stop token included if it stopped) and how it ran."""

    tokens: list[int]
    batch_size: int
    generation_s: float
    grammar_error: str | None = None
    prefix_tokens_reused: int = 0


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Rows left-padded to one length, and their attention masks (0 over the padding)."""
    width = max(len(r) for r in rows)
    ids = [[pad_id] * (width - len(r)) + list(r) for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return ids, mask


class RowLimits:
    """Stopping criterion: each row stops once it has its own number of new tokens."""

    def __init__(self, prompt_length: int, limits: Sequence[int]) -> None:
        self.prompt_length = prompt_length
        self.limits = list(limits)
        self._on_device: Any = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self._on_device is None:  # copied to the device once per call, not every step
            self._on_device = torch.tensor(self.limits, device=input_ids.device)
        return self._on_device <= input_ids.shape[1] - self.prompt_length


class BatchedGrammarProcessor:
    """Masks, row by row, every token a row's grammar rejects; rows without a grammar pass untouched.

    Once a row's grammar is complete only a stop token remains; should a matcher fail, only stop
    tokens stay allowed and `errors[row]` says why.
    """

    def __init__(
        self, matchers: Sequence[Any], prompt_length: int, stop_ids: Sequence[int], limits: Sequence[int]
    ) -> None:
        self.matchers = list(matchers)
        self.prompt_length = prompt_length
        self.stop_ids = list(stop_ids)
        self.limits = list(limits)
        self.errors: list[str | None] = [None] * len(self.matchers)
        self._done = [False] * len(self.matchers)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        from clinicflow.model.grammar import allowed_tokens

        step = input_ids.shape[1] - self.prompt_length
        for row, matcher in enumerate(self.matchers):
            if matcher is None or self._done[row]:
                continue
            if step > 0 and self.errors[row] is None:
                token = int(input_ids[row, -1])
                if token in self.stop_ids or step > self.limits[row]:
                    self._done[row] = True
                    continue
                if not matcher.consume_token(token):
                    self.errors[row] = matcher.get_error() or f"token {token} rejected"
            allowed = allowed_tokens(
                matcher, scores.shape[-1], self.stop_ids, failed=self.errors[row] is not None
            )
            scores[row] = scores[row].masked_fill(~allowed.to(scores.device), float("-inf"))
        return scores


class RowStreamer:
    """A transformers streamer that hands each row's new tokens to that row's callback."""

    def __init__(
        self,
        callbacks: Sequence[Callable[[int], None] | None],
        stop_ids: Sequence[int],
        limits: Sequence[int],
    ) -> None:
        self.callbacks = list(callbacks)
        self.stop_ids = set(stop_ids)
        self.limits = list(limits)
        self._counts = [0] * len(self.callbacks)
        self._finished = [False] * len(self.callbacks)
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self._finished[row]:
                continue
            self._counts[row] += 1
            callback = self.callbacks[row]
            if callback is not None:
                callback(int(token))
            if token in self.stop_ids or self._counts[row] >= self.limits[row]:
                self._finished[row] = True

    def end(self) -> None:
        return None


RunBatch = Callable[[list[GenerationRequest]], list[GenerationOutput]]


@dataclass
class _Pending:
    request: GenerationRequest
    future: Future[GenerationOutput] = field(default_factory=Future)


class BatchScheduler:
    """Collects concurrent requests for `window_s` (up to `max_batch`) and runs them as batches.

    `run_batch` generates one group of compatible requests and returns one output per request, in
    order. One worker thread calls it, so the model runs one batch at a time.
    """

    def __init__(self, run_batch: RunBatch, *, max_batch: int = 64, window_s: float = 0.005) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.window_s = window_s
        self.batches_run = 0
        self.largest_batch = 0
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, request: GenerationRequest) -> Future[GenerationOutput]:
        """Queue a request; the future holds its output (or the error its batch raised)."""
        if self._closed:
            raise RuntimeError("the batch scheduler is closed")
        self._ensure_thread()
        pending = _Pending(request)
        self._queue.put(pending)
        return pending.future

    def generate(self, request: GenerationRequest) -> GenerationOutput:
        """Submit a request and wait for its output."""
        return self.submit(request).result()

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        self._closed = True
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="clinicflow-batcher", daemon=True)
                self._thread.start()

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch = [first]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = self._collect(first)
            groups: dict[tuple[float, tuple[str, ...]], list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.request.group_key(), []).append(pending)
            for group in groups.values():
                self._run(group)

    def _run(self, group: list[_Pending]) -> None:
        live = [p for p in group if p.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(live))
        try:
            outputs = self.run_batch([p.request for p in live])
            if len(outputs) != len(live):
                raise RuntimeError(f"the batch returned {len(outputs)} outputs for {len(live)} requests")
        except BaseException as exc:
            for pending in live:
                with contextlib.suppress(Exception):
                    pending.future.set_exception(exc)
            return
        for pending, output in zip(live, outputs, strict=True):
            pending.future.set_result(output)
