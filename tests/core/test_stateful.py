"""Drain stops stateful instances in place; active starts them again (reference §3.9)."""

from __future__ import annotations

from sqlalchemy import select, update

from core.stateful import follow_availability
from core.vault import Vault
from models import Node, Service, ServiceInstance
from models.db import Database
from tests.core.deploy_support import add_nodes, add_service
from tests.fixtures.grid_rows import create_grid_row


async def desired(db: Database) -> dict[str, str]:
    """Service name → desired state of its instance."""
    async with db.session() as session:
        rows = await session.execute(
            select(Service.name, ServiceInstance.desired_state).join(
                Service, Service.id == ServiceInstance.service_id
            )
        )
        return {row.name: row.desired_state for row in rows}


async def follow(db: Database, node: Node, availability: str) -> int:
    """follow_availability in its own transaction."""
    async with db.session() as session:
        changed = await follow_availability(session, node, availability)
        await session.commit()
    return changed


async def test_drain_stops_only_stateful_instances_and_active_starts_them_again(
    db: Database, vault: Vault
) -> None:
    grid = await create_grid_row(db, vault, "main")
    node, other = await add_nodes(db, grid, "node-1", "node-2")
    placed = {"db": node, "cache": node, "web": node, "elsewhere": other}
    for name, where in placed.items():
        service = await add_service(db, grid, name)
        async with db.session() as session:
            session.add(
                ServiceInstance(
                    service_id=service.id,
                    instance_number=1,
                    node_id=where.id,
                    desired_state="running",
                )
            )
            await session.execute(
                update(Service)
                .where(Service.id == service.id)
                .values(stateful=name != "web", state="running")
            )
            await session.commit()

    assert await follow(db, node, "drain") == 2
    assert await desired(db) == {
        "db": "stopped",
        "cache": "stopped",
        "web": "running",  # stateless: the rescheduling tick moves it
        "elsewhere": "running",  # another node
    }
    async with db.session() as session:  # a user stops one service while the node is drained
        await session.execute(
            update(Service).where(Service.name == "cache").values(state="stopped")
        )
        await session.commit()
    assert await follow(db, node, "active") == 1
    assert await desired(db) == {
        "db": "running",
        "cache": "stopped",
        "web": "running",
        "elsewhere": "running",
    }
