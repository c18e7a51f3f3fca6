"""Wire shapes of services, deploy objects and service instances (reference §2.13)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from api.schemas.audit_logs import timestamp
from core.service_spec import DEFAULT_STOP_GRACE_PERIOD, ServiceCreate, ServiceUpdate
from core.services import InstanceCounts, qualified_name, service_path
from models import Grid, Node, Service, ServiceDeploy, ServiceInstance

__all__ = ["ServiceCreate", "ServiceUpdate"]


class GridRef(msgspec.Struct):
    """``grid{id}``."""

    id: str


class StackRef(msgspec.Struct):
    """``stack{id,name}``; the id is ``grid/stack``."""

    id: str
    name: str


class LinkView(msgspec.Struct):
    """A link as rendered: the target's id and qualified name, and the alias."""

    id: str
    alias: str
    name: str


class HookView(msgspec.Struct):
    """A hook without its instance list and oneshot bookkeeping."""

    name: str
    type: str
    cmd: str
    oneshot: bool


class HealthStatus(msgspec.Struct):
    """Aggregated health of the instances."""

    healthy: int
    unhealthy: int
    total: int


class Counts(msgspec.Struct):
    """``instance_counts``."""

    total: int
    running: int


class ServiceView(msgspec.Struct):
    """The service JSON; ``health_check``/``health_status`` only with a health check protocol."""

    id: str
    created_at: str
    updated_at: str
    image: str
    affinity: list[str]
    name: str
    stateful: bool
    user: str | None
    instances: int
    cmd: list[str] | None
    entrypoint: str | None
    net: str
    dns: str
    ports: list[dict[str, Any]]
    env: list[str]
    secrets: list[dict[str, Any]]
    memory: int | None
    memory_swap: int | None
    shm_size: int | None
    cpus: float | None
    cpu_shares: int | None
    volumes: list[str]
    volumes_from: list[str]
    cap_add: list[str]
    cap_drop: list[str]
    state: str
    grid: GridRef
    stack: StackRef
    links: list[LinkView]
    log_driver: str | None
    log_opts: dict[str, str]
    strategy: str
    deploy_opts: dict[str, Any]
    pid: str | None
    read_only: bool
    instance_counts: Counts
    hooks: list[HookView]
    revision: int
    stack_revision: int | None
    stop_signal: str | None
    stop_grace_period: int
    certificates: list[dict[str, Any]]
    health_check: dict[str, Any] | UnsetType = UNSET
    health_status: HealthStatus | UnsetType = UNSET


class ServiceList(msgspec.Struct):
    """``{"services": [...]}``."""

    services: list[ServiceView]


class InstanceDeployView(msgspec.Struct):
    """Progress of one instance within a deploy."""

    instance_number: int
    node: str | None
    state: str
    error: str | None


class DeployView(msgspec.Struct):
    """The deploy object clients poll."""

    id: str
    created_at: str
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    service_id: str
    state: str
    reason: str | None
    instance_count: int
    instance_deploys: list[InstanceDeployView]


class DeployList(msgspec.Struct):
    """``{"deploys": [...]}``."""

    deploys: list[DeployView]


class InstanceNode(msgspec.Struct):
    """``node{id,name,public_ip}`` of an instance."""

    id: str
    name: str
    public_ip: str | None


class InstanceView(msgspec.Struct):
    """A service instance: where it should run and what the agent reported."""

    id: str
    created_at: str
    updated_at: str
    instance_number: int
    desired_state: str
    state: str
    deploy_rev: str | None
    rev: str | None
    error: str | None
    node: InstanceNode | None


class InstanceList(msgspec.Struct):
    """``{"instances": [...]}``."""

    instances: list[InstanceView]


def _grace(value: Any) -> int:
    return DEFAULT_STOP_GRACE_PERIOD if value is None else int(value)


def _time(value: datetime | None) -> str | None:
    return timestamp(value) if value is not None else None


def service_view(
    grid: Grid,
    service: Service,
    counts: InstanceCounts,
    linked: Mapping[str, Service],
) -> ServiceView:
    """Render a service; ``linked`` maps service ids to the services its links point at."""
    spec = service.spec
    dns_stack = "" if service.stack == "null" else f"{service.stack}."
    links = [
        LinkView(
            id=service_path(grid.name, target),
            alias=str(link.get("alias")),
            name=qualified_name(target),
        )
        for link in spec.get("links") or []
        if (target := linked.get(str(link.get("service_id")))) is not None
    ]
    view = ServiceView(
        id=service_path(grid.name, service),
        created_at=timestamp(service.created_at),
        updated_at=timestamp(service.updated_at),
        image=service.image,
        affinity=list(spec.get("affinity") or grid.default_affinity or []),
        name=service.name,
        stateful=service.stateful,
        user=spec.get("user"),
        instances=service.instances,
        cmd=spec.get("cmd"),
        entrypoint=spec.get("entrypoint"),
        net=spec.get("net") or "bridge",
        dns=f"{service.name}.{dns_stack}{grid.name}.kontena.local",
        ports=list(spec.get("ports") or []),
        env=list(spec.get("env") or []),
        secrets=[
            {"secret": item["secret"], "name": item["name"], "type": item.get("type", "env")}
            for item in spec.get("secrets") or []
        ],
        memory=spec.get("memory"),
        memory_swap=spec.get("memory_swap"),
        shm_size=spec.get("shm_size"),
        cpus=spec.get("cpus"),
        cpu_shares=spec.get("cpu_shares"),
        volumes=list(spec.get("volumes") or []),
        volumes_from=list(spec.get("volumes_from") or []),
        cap_add=list(spec.get("cap_add") or []),
        cap_drop=list(spec.get("cap_drop") or []),
        state=service.state,
        grid=GridRef(id=grid.name),
        stack=StackRef(id=f"{grid.name}/{service.stack}", name=service.stack),
        links=links,
        log_driver=spec.get("log_driver"),
        log_opts=dict(spec.get("log_opts") or {}),
        strategy=service.strategy,
        deploy_opts=dict(spec.get("deploy_opts") or {}),
        pid=spec.get("pid"),
        read_only=bool(spec.get("read_only")),
        instance_counts=Counts(total=counts.total, running=counts.running),
        hooks=[
            HookView(name=h["name"], type=h["type"], cmd=h["cmd"], oneshot=bool(h["oneshot"]))
            for h in spec.get("hooks") or []
        ],
        revision=service.revision,
        stack_revision=service.stack_revision,
        stop_signal=spec.get("stop_signal"),
        stop_grace_period=_grace(spec.get("stop_grace_period")),
        certificates=[
            {"subject": item["subject"], "name": item["name"], "type": item.get("type", "env")}
            for item in spec.get("certificates") or []
        ],
    )
    check = spec.get("health_check")
    if check and check.get("protocol"):
        view.health_check = {
            key: check.get(key)
            for key in ("protocol", "uri", "port", "timeout", "initial_delay", "interval")
        }
        # What the agents' probes last said; an instance not probed yet counts in neither.
        view.health_status = HealthStatus(
            healthy=counts.healthy, unhealthy=counts.unhealthy, total=counts.total
        )
    return view


def deploy_view(grid: Grid, service: Service, deploy: ServiceDeploy) -> DeployView:
    """Render a deploy object."""
    return DeployView(
        id=deploy.id,
        created_at=timestamp(deploy.created_at),
        queued_at=_time(deploy.queued_at),
        started_at=_time(deploy.started_at),
        finished_at=_time(deploy.finished_at),
        service_id=service_path(grid.name, service),
        state=deploy.state,
        reason=deploy.reason,
        instance_count=service.instances,
        instance_deploys=[
            InstanceDeployView(
                instance_number=int(item["instance_number"]),
                node=item.get("node"),
                state=str(item.get("state") or "created"),
                error=item.get("error"),
            )
            for item in deploy.instance_deploys or []
        ],
    )


def instance_view(grid: Grid, instance: ServiceInstance, node: Node | None) -> InstanceView:
    """Render a service instance."""
    return InstanceView(
        id=instance.id,
        created_at=timestamp(instance.created_at),
        updated_at=timestamp(instance.updated_at),
        instance_number=instance.instance_number,
        desired_state=instance.desired_state,
        state=instance.state,
        deploy_rev=instance.deploy_rev,
        rev=instance.rev,
        error=instance.error,
        node=(
            InstanceNode(id=f"{grid.name}/{node.name}", name=node.name, public_ip=node.public_ip)
            if node is not None
            else None
        ),
    )
