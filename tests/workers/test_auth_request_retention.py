"""The retention tick forgets login requests a day after they expired."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import dramatiq
import pytest
from sqlalchemy import select

from core.jobs import Job
from models import AuthorizationRequest, TickRun
from models.base import utcnow
from models.db import Database
from tests.workers.support import eventually, utc_ago
from workers.broker import DramatiqSender
from workers.run import start_in_process_worker


@pytest.fixture
def worker(redis_broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    """One in-process worker thread."""
    running = start_in_process_worker(redis_broker, 1)
    yield running
    running.stop(timeout=10_000)


async def test_old_authorization_requests_are_deleted(
    db: Database, redis_broker: dramatiq.Broker, worker: dramatiq.Worker
) -> None:
    async with db.session() as session:
        session.add_all(
            [
                AuthorizationRequest(
                    state_hash=name * 64,
                    redirect_uri="/code",
                    created_at=expires_at - timedelta(hours=1),
                    expires_at=expires_at,
                )
                for name, expires_at in {
                    "a": utc_ago(hours=25),  # gone
                    "b": utc_ago(hours=23),  # expired, still kept to say so
                    "c": utcnow() + timedelta(minutes=30),  # pending
                }.items()
            ]
        )
        await session.commit()

    DramatiqSender(redis_broker).send(
        Job("maintenance.retention", "maintenance", kwargs={"slot": 700, "epoch": 1})
    )

    async def ran() -> bool:
        async with db.session() as session:
            return await session.get(TickRun, ("maintenance.retention", 700)) is not None

    await eventually(ran)
    async with db.session() as session:
        kept = set((await session.execute(select(AuthorizationRequest.state_hash))).scalars())
    assert kept == {"b" * 64, "c" * 64}
