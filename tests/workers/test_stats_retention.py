"""The retention tick deletes node and container stats older than KONTENA_STATS_RETENTION_DAYS."""

from __future__ import annotations

import dramatiq
from sqlalchemy import select

from core.jobs import Job
from models import ContainerStat, Grid, Node, NodeStat, TickRun
from models.db import Database
from tests.workers.support import eventually, utc_ago
from workers.broker import DramatiqSender


async def test_stats_past_the_retention_go_recent_ones_stay(
    db: Database, redis_broker: dramatiq.Broker, worker: dramatiq.Worker
) -> None:
    async with db.session() as session:
        grid = Grid(name="g1", token_hash="h" * 64, token_encrypted="x")
        session.add(grid)
        await session.flush()
        node = Node(grid_id=grid.id, name="n1", node_number=1)
        session.add(node)
        await session.flush()
        for label, age in (("old", utc_ago(days=7, minutes=1)), ("recent", utc_ago(days=6))):
            session.add(
                NodeStat(node_id=node.id, grid_id=grid.id, created_at=age, load={"x": label})
            )
            session.add(
                ContainerStat(
                    grid_id=grid.id,
                    node_id=node.id,
                    container_id=label,
                    name=label,
                    created_at=age,
                )
            )
        await session.commit()

    tick = Job("maintenance.retention", "maintenance", kwargs={"slot": 900, "epoch": 1})
    DramatiqSender(redis_broker).send(tick)

    async def ran() -> bool:
        async with db.session() as session:
            return await session.get(TickRun, ("maintenance.retention", 900)) is not None

    await eventually(ran)
    async with db.session() as session:
        node_stats = [row["x"] for row in (await session.scalars(select(NodeStat.load))).all()]
        container_stats = (await session.scalars(select(ContainerStat.container_id))).all()
    assert node_stats == ["recent"]
    assert container_stats == ["recent"]
