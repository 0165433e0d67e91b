"""The vector store on Postgres with the pgvector extension (`psycopg` and `pgvector` packages)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import VectorStoreError
from .store import Filter, Metadata, StoreBase, VectorHit, _check_batch, _query_vector, _tag

__all__ = ["PgVectorStore", "psycopg_conninfo"]

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,48}$")


def psycopg_conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (`postgresql+psycopg://` -> `postgresql://`)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise VectorStoreError("the pgvector store needs a postgresql:// URL")
    return "postgresql://" + rest


def _to_numpy(value: Any) -> np.ndarray:
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if callable(to_numpy) else value, dtype=np.float32)


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


class PgVectorStore(StoreBase):
    """Cosine search in a Postgres table `(id text, embedding vector(dim), metadata jsonb)`.

    An HNSW index serves unfiltered queries; filtered ones (e.g. one patient) run exactly over the
    rows the jsonb GIN index selects, so a filter never hides a neighbour.
    """

    def __init__(
        self, url: str, *, dim: int | None = None, table: str = "clinicflow_images", hnsw: bool = True
    ) -> None:
        try:
            import psycopg
            from pgvector.psycopg import register_vector
        except ImportError as exc:
            raise VectorStoreError(
                "the pgvector store needs `pip install 'psycopg[binary]' pgvector`"
            ) from exc
        if not _TABLE_NAME.match(table):
            raise VectorStoreError(f"invalid table name {table!r}")
        self.url = _redact(url)
        self.table = table
        self._hnsw = hnsw
        self._lock = threading.RLock()
        try:
            self._conn = psycopg.connect(psycopg_conninfo(url), autocommit=True)
        except psycopg.Error as exc:
            raise VectorStoreError(f"cannot connect to Postgres at {self.url}: {exc}") from exc
        try:
            self._conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            self._conn.close()
            raise VectorStoreError(
                f"the pgvector extension is not available in Postgres at {self.url}: {exc}".strip()
            ) from exc
        register_vector(self._conn)
        self._dim = self._table_dim()
        if self._dim is not None and dim is not None and dim != self._dim:
            raise VectorStoreError(f"table {table} at {self.url} holds dimension {self._dim}, not {dim}")
        if self._dim is None and dim is not None:
            self._create(dim)

    def __repr__(self) -> str:
        return f"PgVectorStore({self.url!r}, table={self.table!r}, dim={self._dim})"

    def _table_dim(self) -> int | None:
        row = self._conn.execute(
            "SELECT a.atttypmod FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding'",
            (self.table,),
        ).fetchone()
        return int(row[0]) if row and row[0] > 0 else None

    def _create(self, dim: int) -> None:
        t = self.table
        with self._conn.transaction():
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (id text PRIMARY KEY, "
                f"embedding vector({int(dim)}) NOT NULL, metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb)"
            )
            self._conn.execute(
                f"CREATE INDEX IF NOT EXISTS {t}_meta ON {t} USING gin (metadata jsonb_path_ops)"
            )
            if self._hnsw and dim <= 2000:
                self._conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding vector_cosine_ops)"
                )
        self._dim = dim

    def add(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Metadata]) -> None:
        """Insert or replace items (by id) in one transaction."""
        if len(ids) == 0:
            return
        import psycopg

        with self._lock:
            v = _check_batch(ids, vectors, metadata, self._dim)
            if self._dim is None:
                self._create(int(v.shape[1]))
            try:
                rows = [(i, row, json.dumps(dict(m))) for i, row, m in zip(ids, v, metadata, strict=True)]
            except (TypeError, ValueError) as exc:
                raise VectorStoreError(f"metadata is not JSON-serialisable: {exc}") from exc
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {self.table} (id, embedding, metadata) VALUES (%s, %s, %s::jsonb) "
                        "ON CONFLICT (id) DO UPDATE SET embedding = excluded.embedding, "
                        "metadata = excluded.metadata",
                        rows,
                    )
            except psycopg.Error as exc:
                raise VectorStoreError(f"cannot write to {self.table} at {self.url}: {exc}") from exc

    @staticmethod
    def _filter_json(filter: Filter) -> str:
        for key, value in filter.items():
            if _tag(value) is None:
                raise VectorStoreError(f"filter value for {key!r} must be a string, number or bool")
        return json.dumps(dict(filter))

    def search(self, vector: np.ndarray, k: int = 10, filter: Filter | None = None) -> list[VectorHit]:
        """Top-k by cosine similarity; exact when filtered, HNSW (approximate) otherwise."""
        if k <= 0:
            raise VectorStoreError(f"k must be positive, got {k}")
        with self._lock:
            if self._dim is None:
                return []
            q = _query_vector(vector, self._dim)
            where = "WHERE metadata @> %s::jsonb" if filter else ""
            params: list[Any] = [q]
            if filter:
                params.append(self._filter_json(filter))
            params += [q, int(k)]
            sql = (
                f"SELECT id, 1 - (embedding <=> %s) AS score, metadata, embedding FROM {self.table} "
                f"{where} ORDER BY embedding <=> %s LIMIT %s"
            )
            with self._conn.transaction():
                if filter:
                    self._conn.execute("SET LOCAL enable_indexscan = off")
                else:
                    self._conn.execute(f"SET LOCAL hnsw.ef_search = {max(40, 2 * int(k))}")
                found = self._conn.execute(sql, params).fetchall()
            return [
                VectorHit(id=i, score=float(s), metadata=dict(m), vector=_to_numpy(e)) for i, s, m, e in found
            ]

    def count(self, filter: Filter | None = None) -> int:
        with self._lock:
            if self._dim is None:
                return 0
            if filter:
                row = self._conn.execute(
                    f"SELECT count(*) FROM {self.table} WHERE metadata @> %s::jsonb",
                    (self._filter_json(filter),),
                ).fetchone()
            else:
                row = self._conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()
            return int(row[0]) if row else 0

    def persist(self) -> None:
        """Writes commit per `add`; nothing is pending."""

    def close(self) -> None:
        with self._lock:
            self._conn.close()
