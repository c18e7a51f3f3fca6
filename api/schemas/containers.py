"""Wire shape of a container (reference §2.13 ``container``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from api.schemas.audit_logs import timestamp
from models import Container, Grid, Node


class ContainerGrid(msgspec.Struct):
    """``node.grid`` of a container."""

    id: str
    name: str
    initial_size: int


class ContainerNode(msgspec.Struct):
    """``node`` of a container; ``id`` is the agent's node id, as Kontena rendered it."""

    id: str | None
    connected: bool
    last_seen_at: str | None
    name: str
    labels: list[str]
    public_ip: str | None
    private_ip: str | None
    node_number: int
    grid: ContainerGrid


class ContainerHealth(msgspec.Struct):
    """``health_status`` when Docker reports a health check."""

    status: str
    updated_at: str | None


class ContainerView(msgspec.Struct, omit_defaults=True):
    """The container JSON; ``health_status`` only when known."""

    id: str
    name: str
    container_id: str
    grid_id: str
    node: ContainerNode
    service_id: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    deleted_at: str | None
    status: str
    state: dict[str, Any]
    deploy_rev: str | None
    service_rev: str | None
    instance_number: int | None
    image: str | None
    cmd: list[str] | None
    env: list[str]
    volumes: list[dict[str, Any]]
    ip_address: str | None
    hostname: str | None
    domainname: str | None
    network_settings: dict[str, Any]
    health_status: ContainerHealth | None = None


class ContainerList(msgspec.Struct):
    """``{"containers": [container]}``."""

    containers: list[ContainerView]


def _time(value: datetime | None) -> str | None:
    return timestamp(value) if value is not None else None


def container_status(state: dict[str, Any]) -> str:
    """Kontena's status: the first flag set of paused … oom_killed, else ``stopped``."""
    for flag in ("paused", "restarting", "dead", "running", "oom_killed"):
        if state.get(flag):
            return flag
    return "stopped"


def container_view(
    grid: Grid, node: Node, row: Container, service_path: str | None
) -> ContainerView:
    """Render a container record; ``service_path`` is its service's public id, if any."""
    info = row.info or {}
    health = info.get("health_status")
    return ContainerView(
        id=f"{grid.name}/{node.name}/{row.name}",
        name=row.name,
        container_id=row.container_id,
        grid_id=grid.name,
        node=ContainerNode(
            id=node.node_id,
            connected=node.connected,
            last_seen_at=_time(node.last_seen_at),
            name=node.name,
            labels=list(node.labels or []),
            public_ip=node.public_ip,
            private_ip=node.private_ip,
            node_number=node.node_number,
            grid=ContainerGrid(id=grid.name, name=grid.name, initial_size=grid.initial_size),
        ),
        service_id=service_path,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        started_at=_time(row.started_at),
        finished_at=_time(row.finished_at),
        deleted_at=None,
        status=container_status(row.state or {}),
        state=dict(row.state or {}),
        deploy_rev=row.deploy_rev,
        service_rev=row.service_rev,
        instance_number=row.instance_number,
        image=row.image,
        cmd=info.get("cmd"),
        env=list(info.get("env") or []),
        volumes=list(info.get("volumes") or []),
        ip_address=info.get("ip_address"),
        hostname=info.get("hostname"),
        domainname=info.get("domainname"),
        network_settings=dict(info.get("network_settings") or {}),
        health_status=(
            ContainerHealth(status=str(health), updated_at=_time(row.updated_at))
            if health
            else None
        ),
    )
