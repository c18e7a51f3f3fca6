"""Keep only the newest finished deploys of each service (Kontena kept 100)."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ServiceDeploy, WorkState

FINISHED = (WorkState.SUCCESS.value, WorkState.ERROR.value)


async def prune_deploys(session: AsyncSession, keep: int, service_id: str | None = None) -> int:
    """Delete finished deploys beyond the newest ``keep`` per service; returns how many.

    Created (queued) and ongoing deploys are never touched, however many there are. Without
    ``service_id`` every service is pruned (the retention tick).
    """
    rank = (
        func.row_number()
        .over(
            partition_by=ServiceDeploy.service_id,
            order_by=(ServiceDeploy.created_at.desc(), ServiceDeploy.id.desc()),
        )
        .label("rank")
    )
    ranked = select(ServiceDeploy.id, rank).where(ServiceDeploy.state.in_(FINISHED))
    if service_id is not None:
        ranked = ranked.where(ServiceDeploy.service_id == service_id)
    inner = ranked.subquery()
    surplus = select(inner.c.id).where(inner.c.rank > keep)
    result = await session.execute(
        delete(ServiceDeploy)
        .where(ServiceDeploy.id.in_(surplus), ServiceDeploy.state.in_(FINISHED))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
