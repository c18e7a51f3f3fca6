"""What placement sees of the database: connected nodes, the grid's instances, the service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.pods import PodError, pod_service_name, spec_ports
from core.service_volumes import node_volume_instances, service_volume_refs
from models import Grid, Node, Service, ServiceInstance
from scheduler.placement import plan_deploy
from scheduler.placement.model import InstanceView, NodeView, Plan, ServiceView


def mem_free(stats: Mapping[str, Any] | None) -> int | None:
    """Free memory as Kontena counts it: total - (used - cached - buffers)."""
    memory = (stats or {}).get("memory")
    if not isinstance(memory, Mapping):
        return None
    try:
        total = int(memory["total"])
        used = int(memory.get("used", 0)) - int(memory.get("cached", 0))
        used -= int(memory.get("buffers", 0))
    except (KeyError, TypeError, ValueError):
        return None
    return total - used


def node_view(node: Node) -> NodeView:
    """A node row as placement sees it."""
    drivers = tuple(d["name"] for d in node.volume_drivers or [] if isinstance(d, dict))
    return NodeView(
        id=node.id,
        name=node.name,
        node_number=node.node_number,
        labels=tuple(node.labels or ()),
        availability=node.availability,
        cpus=node.cpus,
        mem_total=node.mem_total,
        mem_free=mem_free(node.latest_stats),
        volume_drivers=drivers or ("local",),
    )


def _node_ports(spec: Mapping[str, Any]) -> tuple[int, ...]:
    try:
        return tuple(int(p["node_port"]) for p in spec_ports(spec) if p.get("node_port"))
    except (PodError, KeyError, TypeError, ValueError):
        return ()


def service_view(service: Service) -> ServiceView:
    """The service as placement sees it."""
    spec = service.spec or {}
    memory = spec.get("memory") or spec.get("memory_swap")
    return ServiceView(
        id=service.id,
        name=pod_service_name(service),
        stack=service.stack,
        strategy=service.strategy,
        stateful=service.stateful,
        instances=service.instances,
        affinity=tuple(spec.get("affinity") or ()),
        node_ports=_node_ports(spec),
        cpus=spec.get("cpus"),
        memory=int(memory) if memory else None,
        volumes_from=tuple(spec.get("volumes_from") or ()),
        net=spec.get("net") or "bridge",
    )


async def plan_service(session: AsyncSession, grid: Grid, service: Service) -> Plan:
    """Place every instance of ``service`` on the grid's connected nodes."""
    nodes = (
        (
            await session.execute(
                select(Node)
                .where(Node.grid_id == grid.id, Node.connected.is_(True))
                .order_by(Node.node_number)
            )
        )
        .scalars()
        .all()
    )
    view, node_views = await placement_views(session, service, nodes)
    return plan_deploy(
        view, node_views, await grid_instances(session, grid.id), list(grid.default_affinity or ())
    )


async def placement_views(
    session: AsyncSession, service: Service, nodes: Sequence[Node]
) -> tuple[ServiceView, list[NodeView]]:
    """The service and nodes as placement sees them, with the grid volumes the service mounts."""
    refs = list((await service_volume_refs(session, service)).values())
    view = replace(
        service_view(service),
        volume_drivers=tuple(dict.fromkeys(ref.driver for ref in refs)),
        instance_volumes=tuple(dict.fromkeys(r.name for r in refs if r.scope == "instance")),
    )
    held = await node_volume_instances(session, [n.id for n in nodes]) if refs else {}
    return view, [replace(node_view(n), volume_instances=held.get(n.id, ())) for n in nodes]


async def grid_instances(session: AsyncSession, grid_id: str) -> list[InstanceView]:
    """Every placed, not terminated instance of the grid's services, as placement sees it."""
    rows = (
        await session.execute(
            select(ServiceInstance, Service)
            .join(Service, Service.id == ServiceInstance.service_id)
            .where(
                Service.grid_id == grid_id,
                ServiceInstance.node_id.is_not(None),
                ServiceInstance.desired_state != "terminated",
            )
        )
    ).all()
    return [
        InstanceView(
            service_id=other.id,
            service_name=pod_service_name(other),
            instance_number=instance.instance_number,
            node_id=instance.node_id,
            node_ports=_node_ports(other.spec or {}),
        )
        for instance, other in rows
    ]
