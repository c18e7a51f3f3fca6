"""The hourly retention tick also prunes container logs and deploy history (real broker)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import dramatiq
import pytest
from sqlalchemy import func, select

from core.vault import Vault
from models import ContainerLog, Service, ServiceDeploy
from models.base import utcnow
from models.db import Database
from tests.fixtures.grid_rows import create_grid_row
from tests.workers.support import eventually
from tests.workers.test_maintenance import ran, tick
from workers.broker import DramatiqSender
from workers.run import start_in_process_worker


@pytest.fixture
def one_worker(redis_broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    """One worker thread on the Redis broker."""
    running = start_in_process_worker(redis_broker, 1)
    yield running
    running.stop(timeout=10_000)


async def test_retention_tick_prunes_old_lines_and_deploys_beyond_the_history(
    db: Database, vault: Vault, redis_broker: dramatiq.Broker, one_worker: dramatiq.Worker
) -> None:
    """Defaults: lines older than 7 days go; each service keeps its newest 100 finished deploys."""
    grid = await create_grid_row(db, vault, "main")
    now = utcnow()
    async with db.session() as session:
        web = Service(grid_id=grid.id, name="web", image="busybox")
        session.add(web)
        await session.flush()
        for days, data in ((8, "old"), (6, "recent")):
            session.add(
                ContainerLog(
                    grid_id=grid.id,
                    service_id=web.id,
                    stack="null",
                    service="web",
                    node="n1",
                    container_id="c1",
                    name="web-1",
                    instance_number=1,
                    type="stdout",
                    data=data,
                    created_at=now - timedelta(days=days),
                )
            )
        for i in range(102):
            session.add(
                ServiceDeploy(
                    service_id=web.id,
                    grid_id=grid.id,
                    state="success",
                    created_at=now - timedelta(minutes=200 - i),
                )
            )
        await session.commit()

    DramatiqSender(redis_broker).send(tick("maintenance.retention", 900))
    await eventually(lambda: ran(db, "maintenance.retention", 900))

    async with db.session() as session:
        lines = list((await session.execute(select(ContainerLog.data))).scalars())
        deploys = (
            await session.execute(select(func.count()).select_from(ServiceDeploy))
        ).scalar_one()
        oldest = (await session.execute(select(func.min(ServiceDeploy.created_at)))).scalar_one()
    assert lines == ["recent"]
    assert deploys == 100
    assert oldest == now - timedelta(minutes=198)
