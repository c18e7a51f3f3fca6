"""Stateful instances on a drained node stop in place and start again on ``active`` (§3.9).

Their data lives on the node, so a drain does not move them (the rescheduling tick never
moves stateful instances); the agent stops their containers, keeping container and data.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.node_rpc import NodeRpcError
from core.runtime import Runtime
from models import Node, Service, ServiceInstance
from models.base import utcnow

log = logging.getLogger(__name__)

NOTIFY_UPDATE = "/service_pods/notify_update"


async def follow_availability(session: AsyncSession, node: Node, availability: str) -> int:
    """Stop (``drain``) or start again (``active``) the node's stateful instances; returns how
    many changed."""
    stateful = select(Service.id).where(Service.stateful.is_(True))
    if availability == "drain":
        wanted, current = "stopped", "running"
    else:
        # Only services that should run: a stopped service stays stopped.
        stateful = stateful.where(Service.state == "running")
        wanted, current = "running", "stopped"
    result = await session.execute(
        update(ServiceInstance)
        .where(
            ServiceInstance.node_id == node.id,
            ServiceInstance.desired_state == current,
            ServiceInstance.service_id.in_(stateful),
        )
        .values(desired_state=wanted, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def nudge_node(runtime: Runtime, node: Node) -> None:
    """Ask the node's agent to re-fetch its pods now (it also does every 30 s)."""
    try:
        await runtime.node_rpc.notify(node.id, NOTIFY_UPDATE, [])
    except NodeRpcError as exc:
        log.info("node %s not nudged: %s", node.name, exc)
