"""A service removal whose job was lost is sent again by the recovery tick."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from core.services import stalled_removals
from core.vault import Vault
from models import Service
from models.base import utcnow
from models.db import Database
from tests.fixtures.grid_rows import create_grid_row


async def test_only_removals_stalled_past_the_cutoff_are_sent_again(
    db: Database, vault: Vault
) -> None:
    grid = await create_grid_row(db, vault, "removals")
    async with db.session() as session:
        stalled = Service(grid_id=grid.id, name="old", image="x", state="removing")
        fresh = Service(grid_id=grid.id, name="new", image="x", state="removing")
        running = Service(grid_id=grid.id, name="live", image="x", state="running")
        session.add_all([stalled, fresh, running])
        await session.flush()
        long_ago = utcnow() - timedelta(hours=1)
        await session.execute(
            update(Service)
            .where(Service.id.in_([stalled.id, running.id]))
            .values(updated_at=long_ago)
        )
        await session.commit()

    cutoff = utcnow() - timedelta(minutes=5)
    async with db.session() as session:
        jobs = await stalled_removals(session, cutoff)
        await session.commit()
    assert [(job.actor, job.args) for job in jobs] == [("services.remove", (stalled.id,))]

    # Touched: the next tick within the cutoff does not send it again.
    async with db.session() as session:
        assert await stalled_removals(session, cutoff) == []
