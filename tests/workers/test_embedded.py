"""Embedded mode: the same pipeline on SQLite with the in-process broker and worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import dramatiq
import msgspec
import pytest
from dramatiq.brokers.stub import StubBroker

from core import work
from core.config import Settings
from core.tokens import object_id
from core.unit_of_work import UnitOfWork
from models.db import Database
from models.migrate import upgrade
from scheduler.clock import run_scheduler
from tests.workers.support import (
    CHORE,
    Chore,
    chore_state,
    create_tables,
    declare_chore_actor,
    deliveries,
    eventually,
)
from workers.broker import DramatiqSender, build_broker
from workers.run import start_in_process_worker


@pytest.fixture
async def embedded(tmp_path: Path, settings: Settings) -> AsyncIterator[tuple[Settings, Database]]:
    """A migrated SQLite master (no Redis) with the chores table and kind."""
    tuned = msgspec.structs.replace(
        settings, data_dir=str(tmp_path), database_url="", redis_url="", recovery_after=0
    )
    await asyncio.to_thread(upgrade, tuned.resolved_database_url)
    db = Database(tuned.resolved_database_url)
    await create_tables(db.engine)
    work.register(CHORE)
    yield tuned, db
    work.unregister(CHORE.name)
    await db.dispose()


@pytest.fixture
def stub_worker(
    embedded: tuple[Settings, Database],
) -> Iterator[tuple[dramatiq.Broker, dramatiq.Worker]]:
    """The in-process broker and a worker in this process, as `kontena-master up` runs them."""
    broker = build_broker(embedded[0])
    assert isinstance(broker, StubBroker)
    declare_chore_actor(broker)
    worker = start_in_process_worker(broker, 2)
    yield broker, worker
    worker.stop(timeout=10_000)
    broker.close()


async def finished(db: Database, chore_id: str) -> Chore | None:
    """The chore once it reached a terminal state."""
    row = await chore_state(db, chore_id)
    return row if row.state in ("success", "error") else None


async def create_chore(db: Database, broker: dramatiq.Broker, mode: str = "ok") -> str:
    """Write the row and send its job after the commit, as a request does."""
    async with db.session() as session:
        uow = UnitOfWork(session, DramatiqSender(broker))
        chore = Chore(id=object_id(), mode=mode)
        session.add(chore)
        uow.enqueue(CHORE.job(chore.id))
        assert await uow.commit() == []
        return chore.id


async def test_embedded_work_runs_once_and_failures_end_in_error(
    embedded: tuple[Settings, Database], stub_worker: tuple[dramatiq.Broker, dramatiq.Worker]
) -> None:
    """Success, duplicate delivery, exhausted retries and permanent errors on SQLite."""
    _, db = embedded
    broker, _ = stub_worker
    ok = await create_chore(db, broker, mode="slow")
    DramatiqSender(broker).send(CHORE.job(ok))  # a duplicate
    failing = await create_chore(db, broker, mode="fail")
    permanent = await create_chore(db, broker, mode="permanent")

    async def ok_done_twice_delivered() -> Chore | None:
        row = await finished(db, ok)
        return row if row and await deliveries(db, ok) == 2 else None

    row = await eventually(ok_done_twice_delivered)
    assert (row.state, row.done, row.attempts) == ("success", 1, 1)
    row = await eventually(lambda: finished(db, failing))
    assert (row.state, row.attempts) == ("error", 3)
    assert row.reason == "failed after 3 attempts: RuntimeError (details in the worker log)"
    row = await eventually(lambda: finished(db, permanent))
    assert (row.state, row.attempts, row.reason) == (
        "error",
        1,
        "image nginx:nope does not exist",
    )


async def test_embedded_scheduler_recovers_lost_work(
    embedded: tuple[Settings, Database], stub_worker: tuple[dramatiq.Broker, dramatiq.Worker]
) -> None:
    """A row whose job was never sent is found by the in-process scheduler's recovery tick."""
    settings, db = embedded
    broker, _ = stub_worker
    async with db.session() as session:
        lost = Chore(id=object_id())  # committed, but its send was lost
        session.add(lost)
        await session.commit()

    stop = asyncio.Event()
    clock = asyncio.create_task(
        run_scheduler(settings, db, DramatiqSender(broker), stop=stop, holder="embedded")
    )
    try:
        row = await eventually(lambda: finished(db, lost.id))
        assert (row.state, row.done) == ("success", 1)
        assert row.sent_at is not None
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(clock, 5)
