"""Maintenance ticks through the real Redis broker: retention, once per slot, fenced by epoch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import dramatiq
import pytest
from sqlalchemy import func, select

from core.jobs import Job
from core.ticks import LEADER_LEASE
from models import AccessToken, AuditLog, EventLog, Grid, Lease, TickRun, User
from models.base import utcnow
from models.db import Database
from tests.workers.support import eventually, utc_ago
from workers.broker import DramatiqSender
from workers.run import start_in_process_worker


@pytest.fixture
def fifo_worker(redis_broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    """One worker thread with a prefetch of one: messages of a queue run in the order sent."""
    running = start_in_process_worker(redis_broker, 1)
    yield running
    running.stop(timeout=10_000)


def tick(actor: str, slot: int, epoch: int = 1) -> Job:
    """A tick message as the scheduler sends it."""
    return Job(actor, "maintenance", kwargs={"slot": slot, "epoch": epoch})


async def ran(db: Database, job: str, slot: int) -> bool:
    """True once the tick (job, slot) was recorded."""
    async with db.session() as session:
        return await session.get(TickRun, (job, slot)) is not None


async def audit_rows(db: Database) -> int:
    """How many audit log rows exist."""
    async with db.session() as session:
        return int((await session.execute(select(func.count()).select_from(AuditLog))).scalar_one())


async def add_old_audit_row(db: Database) -> None:
    """An audit row past the 365-day retention."""
    async with db.session() as session:
        session.add(
            AuditLog(resource_type="grid", event_name="create", created_at=utc_ago(days=400))
        )
        await session.commit()


async def test_retention_deletes_only_what_outlived_its_retention(
    db: Database, redis_broker: dramatiq.Broker, fifo_worker: dramatiq.Worker
) -> None:
    """Expired tokens, old logs and old tick records go; everything else stays."""
    async with db.session() as session:
        user = User(email="ops@example.com", name="ops")
        grid = Grid(name="g1", token_hash="h" * 64, token_encrypted="x")
        session.add_all([user, grid])
        await session.flush()
        tokens = {
            "expired_plain": AccessToken(
                user=user, token_hash="1" * 64, expires_at=utc_ago(hours=1)
            ),
            "expired_refreshable": AccessToken(
                user=user,
                token_hash="2" * 64,
                refresh_token_hash="r2" * 32,
                expires_at=utc_ago(days=2),
            ),
            "refresh_window_passed": AccessToken(
                user=user,
                token_hash="3" * 64,
                refresh_token_hash="r3" * 32,
                expires_at=utc_ago(days=31),
            ),
            "never_expires": AccessToken(user=user, token_hash="4" * 64, expires_at=None),
            "valid": AccessToken(
                user=user, token_hash="5" * 64, expires_at=utcnow() + timedelta(hours=1)
            ),
        }
        session.add_all(tokens.values())
        session.add_all(
            [
                EventLog(grid_id=grid.id, type="old", created_at=utc_ago(days=31)),
                EventLog(grid_id=grid.id, type="recent", created_at=utc_ago(days=29)),
                AuditLog(resource_type="grid", event_name="old", created_at=utc_ago(days=366)),
                AuditLog(resource_type="grid", event_name="recent", created_at=utc_ago(days=364)),
                TickRun(job="x", slot=1, epoch=1, created_at=utc_ago(hours=25)),
                TickRun(job="x", slot=2, epoch=1, created_at=utc_ago(hours=23)),
            ]
        )
        await session.commit()

    DramatiqSender(redis_broker).send(tick("maintenance.retention", 500))
    await eventually(lambda: ran(db, "maintenance.retention", 500))

    async with db.session() as session:
        kept_tokens = set((await session.execute(select(AccessToken.token_hash))).scalars())
        events = set((await session.execute(select(EventLog.type))).scalars())
        audits = set((await session.execute(select(AuditLog.event_name))).scalars())
        ticks = {(r.job, r.slot) for r in await session.execute(select(TickRun.job, TickRun.slot))}
    expected = {"expired_refreshable", "never_expires", "valid"}
    assert kept_tokens == {tokens[name].token_hash for name in expected}
    assert events == {"recent"}
    assert audits == {"recent"}
    assert ("x", 2) in ticks and ("maintenance.retention", 500) in ticks
    assert ("x", 1) not in ticks


async def test_a_tick_runs_once_per_slot_and_only_for_the_current_epoch(
    db: Database, redis_broker: dramatiq.Broker, fifo_worker: dramatiq.Worker
) -> None:
    """The same (job, slot) fired twice deletes once; a deposed leader's tick does nothing."""
    sender = DramatiqSender(redis_broker)
    await add_old_audit_row(db)
    sender.send(tick("maintenance.retention", 700))
    await eventually(lambda: ran(db, "maintenance.retention", 700))
    assert await audit_rows(db) == 0

    # Fired again for the same slot (a failover, a redelivery): it must not run again. The
    # marker tick behind it on the same single-threaded FIFO worker tells when it was handled.
    await add_old_audit_row(db)
    sender.send(tick("maintenance.retention", 700))
    sender.send(tick("maintenance.recover", 700))
    await eventually(lambda: ran(db, "maintenance.recover", 700))
    assert await audit_rows(db) == 1

    # A tick from epoch 4 after epoch 5 took the lease is fenced off.
    async with db.session() as session:
        session.add(Lease(name=LEADER_LEASE, holder="new-leader", epoch=5, expires_at=utcnow()))
        await session.commit()
    sender.send(tick("maintenance.retention", 701, epoch=4))
    sender.send(tick("maintenance.recover", 701, epoch=5))
    await eventually(lambda: ran(db, "maintenance.recover", 701))
    assert not await ran(db, "maintenance.retention", 701)
    assert await audit_rows(db) == 1

    # The next slot of the current epoch runs.
    sender.send(tick("maintenance.retention", 701, epoch=5))
    await eventually(lambda: ran(db, "maintenance.retention", 701))
    assert await audit_rows(db) == 0
