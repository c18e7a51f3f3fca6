"""Fixtures for the job pipeline: the chores table, a Redis broker and a real worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import dramatiq
import pytest
import redis

from core import work
from core.config import Settings
from models.db import Database
from tests.workers.support import CHORE, create_tables, declare_chore_actor, drop_tables
from workers.actors import load_actors
from workers.broker import build_broker
from workers.run import start_in_process_worker


@pytest.fixture
async def chores(db: Database) -> AsyncIterator[None]:
    """The test work kind: its tables exist and it is registered for the test."""
    await create_tables(db.engine)
    work.register(CHORE)
    yield
    work.unregister(CHORE.name)
    await drop_tables(db.engine)


@pytest.fixture
def redis_broker(settings: Settings, redis_client: redis.Redis) -> Iterator[dramatiq.Broker]:
    """A Redis broker on this run's Redis database, with every actor and the test actor."""
    redis_client.flushdb()  # no stray messages from earlier tests or processes
    broker = build_broker(settings)
    load_actors(broker)
    declare_chore_actor(broker)
    yield broker
    broker.close()


@pytest.fixture
def worker(redis_broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    """A real Dramatiq worker consuming the Redis broker in threads of this process."""
    running = start_in_process_worker(redis_broker, 4)
    yield running
    running.stop(timeout=10_000)
