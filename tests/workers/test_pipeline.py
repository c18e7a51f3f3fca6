"""The outbox pipeline on PostgreSQL and the real Redis broker, with a real worker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import dramatiq
import msgspec
import pytest
import redis
from sqlalchemy import select

from core.config import Settings
from core.jobs import Job
from core.tokens import object_id
from core.unit_of_work import UnitOfWork
from models.db import Database
from tests.workers.support import (
    CHORE,
    SECRET,
    Chore,
    PrivateRedis,
    chore_state,
    declare_chore_actor,
    deliveries,
    eventually,
)
from workers.actors import load_actors
from workers.broker import DramatiqSender, build_broker
from workers.run import start_in_process_worker

pytestmark = pytest.mark.usefixtures("chores")


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server this test may stop and start; stopped by pid at teardown."""
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


async def create_chore(db: Database, sender: DramatiqSender, mode: str = "ok") -> str:
    """What an API request does: one transaction writes the row, the job goes after commit."""
    async with db.session() as session:
        uow = UnitOfWork(session, sender)
        chore = Chore(id=object_id(), mode=mode)
        session.add(chore)
        uow.enqueue(CHORE.job(chore.id))
        assert await uow.commit() == []
        return chore.id


async def finished(db: Database, chore_id: str) -> Chore | None:
    """The chore once it reached a terminal state."""
    row = await chore_state(db, chore_id)
    return row if row.state in ("success", "error") else None


async def test_outbox_rollback_sends_nothing_and_lost_sends_are_recovered(
    db: Database, settings: Settings, private_redis: PrivateRedis
) -> None:
    """Rollback sends nothing; a send that fails after commit is re-sent by the recovery tick."""
    tuned = msgspec.structs.replace(settings, redis_url=private_redis.url, recovery_after=0)
    broker = build_broker(tuned)
    load_actors(broker)
    declare_chore_actor(broker)
    sender = DramatiqSender(broker)
    queue = redis.Redis.from_url(private_redis.url)

    # A request that enqueues its job and then fails: nothing is written, nothing is sent.
    rolled_back = object_id()
    async with db.session() as session:
        uow = UnitOfWork(session, sender)
        session.add(Chore(id=rolled_back))
        uow.enqueue(CHORE.job(rolled_back))
        await session.flush()
        await uow.rollback()
    assert queue.llen("dramatiq:deploys") == 0
    async with db.session() as session:
        assert await session.get(Chore, rolled_back) is None

    # Commit succeeds, then Redis is gone: the row stays `created`, the job is reported lost.
    private_redis.stop()
    lost = object_id()
    async with db.session() as session:
        uow = UnitOfWork(session, sender)
        session.add(Chore(id=lost))
        uow.enqueue(CHORE.job(lost))
        failed = await uow.commit()
    assert failed == [CHORE.job(lost)]
    row = await chore_state(db, lost)
    assert (row.state, row.sent_at, row.done) == ("created", None, 0)

    # Redis is back: the recovery tick finds the row, re-sends its job, the work completes.
    private_redis.start()
    worker = start_in_process_worker(broker, 2)
    try:
        tick = Job("maintenance.recover", "maintenance", kwargs={"slot": 1, "epoch": 1})

        async def send_tick() -> bool:
            try:
                await asyncio.to_thread(sender.send, tick)
            except redis.ConnectionError:
                return False  # the pool still holds a connection to the old server
            return True

        await eventually(send_tick)
        row = await eventually(lambda: finished(db, lost))
        assert (row.state, row.done, row.attempts) == ("success", 1, 1)
        assert row.sent_at is not None and row.finished_at is not None
        assert await deliveries(db, lost) == 1
    finally:
        worker.stop(timeout=10_000)
        broker.close()
        queue.close()


async def test_duplicate_delivery_does_the_work_once(
    db: Database, redis_broker: dramatiq.Broker, worker: dramatiq.Worker
) -> None:
    """The same job delivered twice at once, then once more: the work is done once."""
    sender = DramatiqSender(redis_broker)
    chore_id = await create_chore(db, sender, mode="slow")
    sender.send(CHORE.job(chore_id))  # the duplicate, while the first one is still working

    async def both_delivered_and_done() -> Chore | None:
        row = await finished(db, chore_id)
        return row if row and await deliveries(db, chore_id) == 2 else None

    row = await eventually(both_delivered_and_done)
    assert (row.state, row.done, row.attempts) == ("success", 1, 1)

    # A late redelivery of finished work changes nothing either.
    sender.send(CHORE.job(chore_id))

    async def delivered_thrice() -> bool:
        return await deliveries(db, chore_id) == 3

    await eventually(delivered_thrice)
    row = await chore_state(db, chore_id)
    assert (row.state, row.done, row.attempts) == ("success", 1, 1)


async def test_exhausted_retries_mark_the_row_error_without_secrets(
    db: Database,
    redis_broker: dramatiq.Broker,
    worker: dramatiq.Worker,
    redis_client: redis.Redis,
) -> None:
    """A job that keeps failing is tried 1 + max_retries times, then its row ends `error`."""
    chore_id = await create_chore(db, DramatiqSender(redis_broker), mode="fail")
    row = await eventually(lambda: finished(db, chore_id))
    assert row.state == "error"
    assert row.attempts == 3
    assert row.finished_at is not None and row.lease_until is None
    assert row.reason == "failed after 3 attempts: RuntimeError (details in the worker log)"
    assert SECRET not in (row.reason or "")
    assert await deliveries(db, chore_id) == 3
    # Dramatiq dead-lettered the message; nothing is scheduled to run again.

    async def dead_lettered() -> bool:
        return bool(redis_client.zcard("dramatiq:deploys.XQ") == 1)

    await eventually(dead_lettered)
    assert redis_client.zcard("dramatiq:deploys.DQ") == 0


async def test_permanent_error_is_not_retried(
    db: Database,
    redis_broker: dramatiq.Broker,
    worker: dramatiq.Worker,
    redis_client: redis.Redis,
) -> None:
    """PermanentJobError ends the row `error` at once with the actor's reason."""
    chore_id = await create_chore(db, DramatiqSender(redis_broker), mode="permanent")
    row = await eventually(lambda: finished(db, chore_id))
    assert (row.state, row.attempts) == ("error", 1)
    assert row.reason == "image nginx:nope does not exist"
    # Retries runs before WorkRows marks the row, so a retry would already be queued by now.
    assert redis_client.zcard("dramatiq:deploys.DQ") == 0
    assert redis_client.llen("dramatiq:deploys") == 0
    assert await deliveries(db, chore_id) == 1


async def test_successful_work_is_finished(
    db: Database, redis_broker: dramatiq.Broker, worker: dramatiq.Worker
) -> None:
    """The plain path: created → ongoing → success with timestamps."""
    chore_id = await create_chore(db, DramatiqSender(redis_broker))
    row = await eventually(lambda: finished(db, chore_id))
    assert (row.state, row.done, row.reason) == ("success", 1, None)
    assert row.started_at is not None and row.finished_at is not None
    assert row.started_at <= row.finished_at
    async with db.session() as session:
        states = (await session.execute(select(Chore.state))).scalars().all()
    assert states == ["success"]
