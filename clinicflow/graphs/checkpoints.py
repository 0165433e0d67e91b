"""Checkpointing shared by every workflow: the SQLite checkpointer and per-thread run configs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.pregel import Pregel

__all__ = ["has_checkpointer", "open_checkpointer", "thread_config"]


@asynccontextmanager
async def open_checkpointer(path: Path | str) -> AsyncIterator[AsyncSqliteSaver]:
    """Open (creating if needed) an SQLite checkpoint file for graph runs; closed on exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        yield saver


def thread_config(config: RunnableConfig | None, thread_id: str) -> RunnableConfig:
    """`config` with the run's thread id set, so its checkpoints are found again on resume."""
    merged: RunnableConfig = dict(config or {})  # type: ignore[assignment]
    merged["configurable"] = {**merged.get("configurable", {}), "thread_id": thread_id}
    return merged


def has_checkpointer(graph: Pregel[Any, Any, Any, Any]) -> bool:
    """Whether the compiled graph saves checkpoints (and so can resume)."""
    return isinstance(graph.checkpointer, BaseCheckpointSaver)
