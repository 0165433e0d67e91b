"""The database under the store: an async SQLAlchemy engine, its sessions and the tables' creation.

SQLite by default (WAL, writes serialized in-process), PostgreSQL at scale.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import Executable, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from clinicflow.api.config import async_database_url, is_postgres
from clinicflow.api.tables import Base

__all__ = ["Database", "rowcount"]

_SCHEMA_LOCK = 7_415_020_771


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """One engine per process, shared by requests and workers: sessions to write and to read."""

    def __init__(self, url: str, *, pool_size: int = 20, echo: bool = False) -> None:
        self.url = url
        self.postgres = is_postgres(url)
        if not self.postgres and url.startswith("sqlite") and "///" in url and ":memory:" not in url:
            Path(url.split("///", 1)[1].split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"echo": echo}
        if self.postgres:
            kwargs |= {"pool_size": pool_size, "max_overflow": pool_size, "pool_recycle": 1800}
        self.engine: AsyncEngine = create_async_engine(async_database_url(url), **kwargs)
        if not self.postgres:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._read_sessions = async_sessionmaker(self._reader, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if not self.postgres else None

    async def init(self) -> None:
        """Create missing tables (under an advisory lock on PostgreSQL, so replicas may start together)."""
        async with self.engine.begin() as conn:
            if self.postgres:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
            await conn.run_sync(Base.metadata.create_all)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits on exit; writes are serialized on SQLite."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self._sessions() as session, session.begin():
            yield session

    async def _update(self, statement: Executable) -> int:
        """Run one UPDATE in its own transaction; how many rows it changed."""
        async with self._write() as session:
            return rowcount(await session.execute(statement))

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncSession]:
        """A session for single-statement reads, in autocommit (no transaction to roll back)."""
        async with self._read_sessions() as session:
            yield session


def rowcount(result: Any) -> int:
    """How many rows a statement changed (0 where the driver does not say)."""
    return int(getattr(result, "rowcount", 0) or 0)
