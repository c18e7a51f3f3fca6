"""A throw-away work kind ("chores") and helpers to drive real workers from tests."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import dramatiq
import redis
from sqlalchemy import ForeignKey, MetaData, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.errors import PermanentJobError
from core.tokens import object_id
from core.work import WorkKind
from models.base import BigIntId, UTCDateTime, utcnow
from models.db import Database
from models.work import WorkRowMixin
from tests.fixtures.server import free_port
from workers.work import perform

T = TypeVar("T")


class ChoreBase(DeclarativeBase):
    """Tables of this test only: their own MetaData, created and dropped by the tests."""

    metadata = MetaData()
    type_annotation_map = {datetime: UTCDateTime()}


class Chore(WorkRowMixin, ChoreBase):
    """A unit of test work; ``mode`` says how the actor behaves, ``done`` counts real work."""

    __tablename__ = "test_chores"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=object_id)
    mode: Mapped[str] = mapped_column(String(16), default="ok")
    done: Mapped[int] = mapped_column(default=0)


class Delivery(ChoreBase):
    """One delivery of a chore message, recorded before the claim (so duplicates are seen)."""

    __tablename__ = "test_chore_deliveries"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    chore_id: Mapped[str] = mapped_column(ForeignKey("test_chores.id", ondelete="CASCADE"))


CHORE = WorkKind(name="test.chore", model=Chore, actor="test.chore", queue="deploys")
SECRET = "hunter2-password"


async def _do_chore(session: AsyncSession, row: Any) -> None:
    if row.mode == "slow":
        await asyncio.sleep(0.5)  # long enough for a duplicate delivery to arrive meanwhile
    if row.mode == "fail":
        raise RuntimeError(f"cannot reach https://user:{SECRET}@registry.example")
    if row.mode == "permanent":
        raise PermanentJobError("image nginx:nope does not exist")
    await session.execute(update(Chore).where(Chore.id == row.id).values(done=Chore.done + 1))


def declare_chore_actor(broker: dramatiq.Broker) -> None:
    """Declare the test actor on ``broker`` (few, fast retries)."""
    from workers import context

    async def chore(row_id: str) -> None:
        async with context.database().session() as session:
            session.add(Delivery(chore_id=row_id))
            await session.commit()
        await perform(CHORE, row_id, _do_chore)

    dramatiq.actor(
        actor_name=CHORE.actor,
        queue_name=CHORE.queue,
        broker=broker,
        work_kind=CHORE.name,
        max_retries=2,
        min_backoff=50,
        max_backoff=200,
        throws=(PermanentJobError,),
    )(chore)


async def create_tables(engine: AsyncEngine) -> None:
    """CREATE the test tables."""
    async with engine.begin() as conn:
        await conn.run_sync(ChoreBase.metadata.create_all)


async def drop_tables(engine: AsyncEngine) -> None:
    """DROP the test tables."""
    async with engine.begin() as conn:
        await conn.run_sync(ChoreBase.metadata.drop_all)


async def chore_state(db: Database, chore_id: str) -> Chore:
    """The chore row as committed now."""
    async with db.session() as session:
        return (await session.execute(select(Chore).where(Chore.id == chore_id))).scalar_one()


async def deliveries(db: Database, chore_id: str) -> int:
    """How often the chore's message was delivered."""
    async with db.session() as session:
        query = select(func.count()).select_from(Delivery).where(Delivery.chore_id == chore_id)
        return int((await session.execute(query)).scalar_one())


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 15.0, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


class PrivateRedis:
    """A redis-server of this test alone, which the test stops and starts again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        # No persistence: a restart must come back empty, like a lost Redis.
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [binary, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        """Stop the server (by its pid) and wait for it to exit."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def utc_ago(**delta: float) -> datetime:
    """A UTC time that far in the past."""
    from datetime import timedelta

    return utcnow() - timedelta(**delta)
