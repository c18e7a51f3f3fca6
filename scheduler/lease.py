"""A leader lease in the database, so PostgreSQL and embedded SQLite work alike.

Holding it is one atomic UPDATE that succeeds only when the lease has expired or is already
ours; ``epoch`` grows whenever the holder changes and fences a deposed leader's ticks. Times are
the holders' clocks, so hosts running schedulers need NTP-grade clock agreement (well under the
TTL).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.base import utcnow
from models.db import Database, insert_ignoring_conflict
from models.leases import Lease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseState:
    """One attempt's outcome: ``epoch`` when we hold the lease, else who holds it, until when."""

    epoch: int | None
    holder: str | None = None
    expires_at: datetime | None = None

    @property
    def held(self) -> bool:
        """True when the attempt made or kept us the holder."""
        return self.epoch is not None


async def try_acquire(
    session: AsyncSession, name: str, holder: str, ttl: float, *, now: datetime | None = None
) -> LeaseState:
    """Take or renew lease ``name`` for ``ttl`` seconds; the caller commits."""
    now = now or utcnow()
    expires_at = now + timedelta(seconds=ttl)
    taken = await session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.expires_at < now, Lease.holder == holder))
        .values(
            holder=holder,
            # A new holder fences its predecessor; renewing (or re-taking our own) does not.
            epoch=case((Lease.holder == holder, Lease.epoch), else_=Lease.epoch + 1),
            expires_at=expires_at,
        )
        .returning(Lease.epoch)
        .execution_options(synchronize_session=False)
    )
    epoch = taken.scalar_one_or_none()
    if epoch is not None:
        return LeaseState(epoch=epoch)
    # No row yet: the first scheduler creates it; the primary key settles a race between two.
    created = await session.execute(
        insert_ignoring_conflict(
            session, Lease, name=name, holder=holder, epoch=1, expires_at=expires_at
        ).returning(Lease.epoch)
    )
    epoch = created.scalar_one_or_none()
    if epoch is not None:
        return LeaseState(epoch=epoch)
    current = (
        await session.execute(select(Lease.holder, Lease.expires_at).where(Lease.name == name))
    ).first()
    if current is None:
        return LeaseState(epoch=None)
    return LeaseState(epoch=None, holder=current.holder, expires_at=current.expires_at)


async def release(session: AsyncSession, name: str, holder: str) -> None:
    """Let the lease expire now, so a waiting scheduler takes over without waiting the TTL."""
    await session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=utcnow())
        .execution_options(synchronize_session=False)
    )


class LeaderLease:
    """One process's view of a named lease: acquire/renew, release."""

    def __init__(self, db: Database, name: str, holder: str, ttl: float) -> None:
        self.db = db
        self.name = name
        self.holder = holder
        self.ttl = ttl

    async def attempt(self) -> LeaseState:
        """Take or renew the lease in its own transaction."""
        async with self.db.session() as session:
            state = await try_acquire(session, self.name, self.holder, self.ttl)
            await session.commit()
            return state

    async def release(self) -> None:
        """Give the lease up (clean shutdown)."""
        async with self.db.session() as session:
            await release(session, self.name, self.holder)
            await session.commit()
