"""What the workers do for start/stop, restart and delete of a service: talk to its nodes.

Start and stop changed the instances' desired state in the request; here each node holding an
instance is told to re-fetch its pods. Remove waits until the agents report the containers gone
(or their nodes are offline, or a timeout passes) and then deletes the service row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from sqlalchemy import delete, select, update

from core.deployer import NOTIFY_UPDATE, DeployEnv
from core.events import record_event
from core.node_rpc import NodeRpcError
from core.services import service_path
from models import Grid, Node, Service, ServiceInstance

log = logging.getLogger(__name__)

RESTART = "/service_pods/restart"
# While removing, nudge the nodes again this often (a lost nudge must not cost the timeout).
RENUDGE_SECONDS = 10.0


async def _placed(env: DeployEnv, service_id: str) -> Sequence[ServiceInstance]:
    async with env.db.session() as session:
        rows = await session.execute(
            select(ServiceInstance).where(
                ServiceInstance.service_id == service_id, ServiceInstance.node_id.is_not(None)
            )
        )
        return rows.scalars().all()


async def _nudge(env: DeployEnv, node_ids: set[str]) -> None:
    for node_id in node_ids:
        try:
            await env.rpc.notify(node_id, NOTIFY_UPDATE, [])
        except NodeRpcError as exc:
            # Offline: the agent re-fetches its pods when it reconnects.
            log.info("node %s not nudged: %s", node_id, exc)


async def notify_service(env: DeployEnv, service_id: str) -> int:
    """Nudge every node holding an instance of the service; returns how many were nudged."""
    nodes = {i.node_id for i in await _placed(env, service_id) if i.node_id}
    await _nudge(env, nodes)
    return len(nodes)


async def restart_service(env: DeployEnv, service_id: str) -> int:
    """Ask each instance's node to restart its container; returns how many were asked."""
    asked = 0
    for instance in await _placed(env, service_id):
        if instance.desired_state != "running" or instance.node_id is None:
            continue
        try:
            await env.rpc.notify(instance.node_id, RESTART, [service_id, instance.instance_number])
            asked += 1
        except NodeRpcError as exc:
            log.info("restart of %s-%d not sent: %s", service_id, instance.instance_number, exc)
    return asked


async def remove_service(env: DeployEnv, service_id: str, wait_seconds: float) -> bool:
    """Terminate every instance, wait for the agents (up to ``wait_seconds``), delete the service.

    Returns False when the service was already gone (a duplicate job).
    """
    async with env.db.session() as session:
        service = await session.get(Service, service_id)
        if service is None:
            return False
        await session.execute(
            update(ServiceInstance)
            .where(ServiceInstance.service_id == service_id)
            .values(desired_state="terminated")
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    started = time.monotonic()
    last_nudge = -RENUDGE_SECONDS
    while time.monotonic() - started < wait_seconds:
        waiting = await _forget_unreachable(env, service_id)
        if not waiting:
            break
        if time.monotonic() - last_nudge >= RENUDGE_SECONDS:
            await _nudge(env, waiting)
            last_nudge = time.monotonic()
        await asyncio.sleep(env.poll_interval)
    else:
        log.warning("service %s: removing without every node's confirmation", service_id)
    async with env.db.session() as session:
        service = await session.get(Service, service_id)
        if service is None:
            return False
        grid = await session.get(Grid, service.grid_id)
        path = service_path(grid.name if grid else "?", service)
        await session.execute(delete(Service).where(Service.id == service_id))
        record_event(
            session,
            service.grid_id,
            "service:remove",
            f"service {path} removed",
            stack=service.stack,
            service=service.name,
        )
        await session.commit()
    return True


async def _forget_unreachable(env: DeployEnv, service_id: str) -> set[str]:
    """Drop instances without a connected node; the nodes of the others (still to confirm)."""
    async with env.db.session() as session:
        rows = (
            await session.execute(
                select(ServiceInstance.id, ServiceInstance.node_id, Node.connected)
                .outerjoin(Node, Node.id == ServiceInstance.node_id)
                .where(ServiceInstance.service_id == service_id)
            )
        ).all()
        gone = [row.id for row in rows if row.node_id is None or not row.connected]
        if gone:
            await session.execute(delete(ServiceInstance).where(ServiceInstance.id.in_(gone)))
            await session.commit()
        return {row.node_id for row in rows if row.node_id is not None and row.connected}
