"""Reading container records: a grid's, a node's or a service's containers and latest stats."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Container, Node


async def list_containers(
    session: AsyncSession,
    grid_id: str,
    *,
    node_id: str | None = None,
    service_id: str | None = None,
    running_only: bool = False,
) -> Sequence[tuple[Container, Node]]:
    """Containers with their node, oldest first; only those of connected nodes.

    Kontena flagged a node's containers deleted when its agent disconnected and re-created
    them from the agent's saves on reconnect: an offline node lists none.
    """
    stmt = (
        select(Container, Node)
        .join(Node, Node.id == Container.node_id)
        .where(Container.grid_id == grid_id, Node.connected.is_(True))
        .order_by(Container.created_at, Container.id)
    )
    if node_id is not None:
        stmt = stmt.where(Container.node_id == node_id)
    if service_id is not None:
        stmt = stmt.where(Container.service_id == service_id)
    if running_only:
        stmt = stmt.where(Container.running.is_(True))
    return [(container, node) for container, node in (await session.execute(stmt)).all()]
