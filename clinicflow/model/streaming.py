"""Streaming a local model's reply as text: its tokens, decoded into text deltas as they are generated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["Completion", "IncrementalText", "TokenStream"]

Completion = Callable[[Callable[[int], None]], tuple[str, dict[str, Any]]]
"""Generates a reply, calling its argument with each token id; returns the text and its statistics."""


class IncrementalText:
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


class TokenStream:
    """Runs a completion in a worker thread and hands its tokens over as text deltas while it runs.

    After `deltas()` is exhausted, the completion's text and statistics are in `result`.
    """

    def __init__(self, complete: Completion, decoder: IncrementalText) -> None:
        self.complete = complete
        self.decoder = decoder
        self.result: tuple[str, dict[str, Any]] = ("", {})

    async def deltas(self) -> AsyncIterator[str]:
        """The text deltas, as the tokens come."""
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[int] = asyncio.Queue()

        def on_token(token: int) -> None:
            loop.call_soon_threadsafe(tokens.put_nowait, token)

        task = asyncio.ensure_future(asyncio.to_thread(self.complete, on_token))
        while not task.done() or not tokens.empty():
            getter = asyncio.ensure_future(tokens.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            delta = self.decoder.add(getter.result())
            if delta:
                yield delta
        self.result = await task

    def rest(self, text: str) -> str:
        """What the final `text` holds beyond the deltas already handed over."""
        emitted = self.decoder.emitted
        return text[len(emitted) :] if text.startswith(emitted) else ""
