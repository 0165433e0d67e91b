"""Run leases: a run is executed by the server that holds its lease (`owner` + `heartbeat_at`); `claim`
takes a lease atomically, so two servers never run one run, and a lapsed lease is taken over."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select, update

from clinicflow.api.database import Database, rowcount
from clinicflow.api.tables import ACTIVE_STATUSES, CLAIMABLE_STATUSES, RunRow, utcnow

__all__ = ["Leases"]


class Leases(Database):
    """Taking, renewing and giving up the lease of runs."""

    async def claim(self, run_id: str, owner: str, lease_s: float) -> RunRow | None:
        """Take the run's lease and mark it running, unless another live server holds it or it is done."""
        now = utcnow()
        async with self._write() as session:
            result = await session.execute(
                update(RunRow)
                .where(
                    RunRow.id == run_id,
                    RunRow.status.in_(CLAIMABLE_STATUSES),
                    RunRow.cancel_requested.is_(False),
                    or_(
                        RunRow.owner.is_(None),
                        RunRow.owner == owner,
                        RunRow.heartbeat_at < now - timedelta(seconds=lease_s),
                    ),
                )
                .values(
                    owner=owner,
                    heartbeat_at=now,
                    status="running",
                    attempts=RunRow.attempts + 1,
                    started_at=func.coalesce(RunRow.started_at, now),
                    updated_at=now,
                )
            )
            if rowcount(result) != 1:
                return None
            return await session.get(RunRow, run_id, populate_existing=True)

    async def heartbeat(self, owner: str) -> int:
        """Renew the lease of every active run this server owns; returns how many."""
        return await self._update(
            update(RunRow)
            .where(RunRow.owner == owner, RunRow.status.in_(ACTIVE_STATUSES))
            .values(heartbeat_at=utcnow())
        )

    async def orphaned_runs(self, owner: str, lease_s: float, *, own: bool) -> list[str]:
        """Active or interrupted runs whose lease lapsed (and, with `own`, those this worker id held)."""
        cutoff = utcnow() - timedelta(seconds=lease_s)
        conditions = [RunRow.heartbeat_at < cutoff, RunRow.owner.is_(None)]
        if own:
            conditions.append(RunRow.owner == owner)
        stmt = (
            select(RunRow.id)
            .where(RunRow.status.in_(CLAIMABLE_STATUSES), or_(*conditions))
            .order_by(RunRow.created_at)
        )
        async with self._read() as session:
            return list((await session.execute(stmt)).scalars())

    async def release(self, owner: str) -> int:
        """On shutdown: mark this server's active runs interrupted and free their lease."""
        return await self._update(
            update(RunRow)
            .where(RunRow.owner == owner, RunRow.status.in_(ACTIVE_STATUSES))
            .values(status="interrupted", owner=None, updated_at=utcnow())
        )

    async def control(self, run_id: str) -> tuple[bool, str | None]:
        """(cancel requested, current owner) of a run, read fresh."""
        async with self._read() as session:
            found = await session.execute(
                select(RunRow.cancel_requested, RunRow.owner).where(RunRow.id == run_id)
            )
            row = found.one_or_none()
            return (bool(row[0]), row[1]) if row else (True, None)
