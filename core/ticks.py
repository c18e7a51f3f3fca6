"""Periodic ticks fire once per (job, slot), and only for the current leader's epoch."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.db import insert_ignoring_conflict
from models.leases import Lease, TickRun

# The lease the scheduler's leader holds; its epoch fences ticks sent by a deposed leader.
LEADER_LEASE = "scheduler"


async def claim_tick(session: AsyncSession, job: str, slot: int, epoch: int) -> bool:
    """Record that ``job`` runs for ``slot``; False when it already ran or the sender was deposed.

    Call it in the same transaction as the tick's work: if the work fails, the record rolls back
    with it, and a concurrent second delivery waits on the primary key, then finds it taken.
    """
    current = (
        await session.execute(select(Lease.epoch).where(Lease.name == LEADER_LEASE))
    ).scalar_one_or_none()
    if current is not None and epoch < current:
        return False
    stmt = insert_ignoring_conflict(session, TickRun, job=job, slot=slot, epoch=epoch)
    inserted = await session.execute(stmt.returning(TickRun.slot))
    return inserted.first() is not None
