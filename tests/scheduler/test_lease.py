"""The scheduler's leader lease in the database, and the clock that sends ticks."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import msgspec

from core.config import Settings
from core.jobs import Job
from core.ticks import LEADER_LEASE
from models import Lease
from models.base import utcnow
from models.db import Database
from scheduler.clock import Tick, run_scheduler
from scheduler.lease import release, try_acquire
from tests.workers.support import eventually


async def attempt(db: Database, holder: str, ttl: float = 10, **kw: object) -> int | None:
    """One acquire/renew; the epoch when ``holder`` holds the lease."""
    async with db.session() as session:
        state = await try_acquire(session, LEADER_LEASE, holder, ttl, **kw)  # type: ignore[arg-type]
        await session.commit()
        return state.epoch


async def test_the_lease_has_one_holder_and_a_new_holder_bumps_the_epoch(db: Database) -> None:
    """First comer holds it; renewals keep the epoch; after expiry the next holder fences."""
    assert await attempt(db, "a") == 1
    assert await attempt(db, "b") is None
    assert await attempt(db, "a") == 1  # renewal
    later = utcnow() + timedelta(seconds=11)
    assert await attempt(db, "b", now=later) == 2
    assert await attempt(db, "a", now=later) is None

    async with db.session() as session:
        await release(session, LEADER_LEASE, "b")
        await session.commit()
    assert await attempt(db, "a") == 3  # released: no need to wait for the TTL


async def test_concurrent_first_acquires_elect_one_leader(db: Database) -> None:
    """Two schedulers creating the missing lease row at once: the primary key picks one."""
    epochs = await asyncio.gather(*(attempt(db, f"s{i}") for i in range(5)))
    assert sorted(epochs, key=lambda e: e is None) == [1, None, None, None, None]


class RecordingSender:
    """A JobSender that remembers what it was asked to send."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def send(self, job: Job) -> None:
        """Record ``job``."""
        self.jobs.append(job)


async def test_only_the_leader_sends_ticks_and_a_clean_stop_hands_over(
    db: Database, settings: Settings
) -> None:
    """The leader sends each tick with its slot and epoch; the follower sends nothing."""
    tuned = msgspec.structs.replace(settings, lease_ttl=2)
    schedule = [Tick("maintenance.recover", "maintenance", 15), Tick("x.hourly", "nodes", 3600)]
    first, second = RecordingSender(), RecordingSender()
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    leader = asyncio.create_task(
        run_scheduler(tuned, db, first, stop=stop_first, holder="first", schedule=schedule)
    )

    async def sent_both() -> bool:
        return {job.actor for job in first.jobs} == {"maintenance.recover", "x.hourly"}

    await eventually(sent_both)
    follower = asyncio.create_task(
        run_scheduler(tuned, db, second, stop=stop_second, holder="second", schedule=schedule)
    )
    try:
        recover = next(job for job in first.jobs if job.actor == "maintenance.recover")
        assert recover.queue == "maintenance"
        assert recover.kwargs["epoch"] == 1
        assert abs(recover.kwargs["slot"] - utcnow().timestamp() // 15) <= 1

        stop_first.set()
        await asyncio.wait_for(leader, 5)

        async def second_leads() -> bool:
            return any(job.kwargs["epoch"] == 2 for job in second.jobs)

        await eventually(second_leads, timeout=5)
        assert all(job.kwargs["epoch"] == 2 for job in second.jobs)
    finally:
        stop_first.set()
        stop_second.set()
        for task in (leader, follower):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
    async with db.session() as session:
        lease = await session.get(Lease, LEADER_LEASE)
        assert lease is not None and lease.holder == "second"
        assert lease.expires_at <= utcnow()  # released on the clean stop
