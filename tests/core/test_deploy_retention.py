"""Deploy history: the newest finished deploys of each service are kept, pending ones always."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.deploy_retention import prune_deploys
from core.vault import Vault
from models import Service, ServiceDeploy
from models.base import utcnow
from models.db import Database
from tests.fixtures.grid_rows import create_grid_row


async def test_only_finished_deploys_beyond_the_newest_n_per_service_go(
    db: Database, vault: Vault
) -> None:
    grid = await create_grid_row(db, vault, "main")
    now = utcnow()
    async with db.session() as session:
        web = Service(grid_id=grid.id, name="web", image="busybox")
        other = Service(grid_id=grid.id, name="other", image="busybox")
        session.add_all([web, other])
        await session.flush()
        states = ["success", "error"] * 4  # 8 finished web deploys, oldest first
        for i, state in enumerate(states):
            session.add(
                ServiceDeploy(
                    service_id=web.id,
                    grid_id=grid.id,
                    state=state,
                    created_at=now - timedelta(minutes=100 - i),
                    finished_at=now,
                )
            )
        # Old but not finished: a queued and an ongoing deploy are never pruned.
        for state in ("created", "ongoing"):
            session.add(
                ServiceDeploy(
                    service_id=web.id,
                    grid_id=grid.id,
                    state=state,
                    created_at=now - timedelta(days=3),
                )
            )
        for i in range(3):
            session.add(
                ServiceDeploy(
                    service_id=other.id,
                    grid_id=grid.id,
                    state="success",
                    created_at=now - timedelta(minutes=i),
                )
            )
        await session.commit()
        web_id, other_id = web.id, other.id

    async with db.session() as session:
        assert await prune_deploys(session, 5, service_id=web_id) == 3
        await session.commit()
    async with db.session() as session:
        assert await prune_deploys(session, 3) == 2  # every service: web keeps 3 of 5, other has 3
        await session.commit()
        rows = (
            await session.execute(
                select(ServiceDeploy.service_id, ServiceDeploy.state, ServiceDeploy.created_at)
            )
        ).all()
    web_rows = sorted((r.created_at, r.state) for r in rows if r.service_id == web_id)
    assert [state for _at, state in web_rows] == ["created", "ongoing", "error", "success", "error"]
    assert web_rows[-1][0] == now - timedelta(minutes=93)
    assert len([r for r in rows if r.service_id == other_id]) == 3
