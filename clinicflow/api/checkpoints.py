"""The service's LangGraph checkpointer: PostgreSQL (pooled) when the database URL says so, else SQLite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from clinicflow.api.config import ApiSettings, checkpoint_postgres_url, is_postgres

__all__ = ["open_service_checkpointer"]

_SETUP_LOCK = 7_415_020_772


@contextlib.asynccontextmanager
async def open_service_checkpointer(
    settings: ApiSettings, allowed_types: Sequence[tuple[str, str]] = ()
) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Open the checkpointer for every workflow of this process; closed on exit.

    PostgreSQL: an `AsyncPostgresSaver` on a connection pool sized to the worker pool, tables set up
    under an advisory lock so replicas may start together. SQLite: the shared checkpoint file.
    `allowed_types` are the (module, class) pairs workflows keep in state, allowed to deserialize.
    """
    serde = JsonPlusSerializer(allowed_msgpack_modules=list(allowed_types))
    if settings.database_url and is_postgres(settings.database_url):
        url = checkpoint_postgres_url(settings.database_url)
        async with _postgres(url, settings.api_workers + 4, serde) as saver:
            yield saver
        return
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = settings.checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(str(path)) as conn:
        sqlite_saver = AsyncSqliteSaver(conn, serde=serde)
        await sqlite_saver.setup()
        yield sqlite_saver


@contextlib.asynccontextmanager
async def _postgres(
    url: str, max_size: int, serde: JsonPlusSerializer
) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg import AsyncConnection
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool
    except ImportError as exc:
        raise RuntimeError(
            "PostgreSQL checkpoints need `pip install langgraph-checkpoint-postgres psycopg[binary]`"
        ) from exc
    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo=url, min_size=1, max_size=max_size, kwargs=kwargs, open=False
    )
    await pool.open(wait=True, timeout=30)
    try:
        saver = AsyncPostgresSaver(conn=pool, serde=serde)
        async with await AsyncConnection.connect(url, autocommit=True) as lock:
            await lock.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK,))
            try:
                await saver.setup()
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
        yield saver
    finally:
        await pool.close()
