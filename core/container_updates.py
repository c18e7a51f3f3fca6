"""Agent → master container methods (§7.3): ``/containers/save``, ``stat``, ``cleanup``, ``event``.

The agent saves a container when it appears or changes, sends every running container's
stats in one ``/containers/stat`` notification per period, and lists the containers it still
has in ``/containers/cleanup`` so records of vanished ones go (docs/agent.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.node_updates import AgentError, agent_method
from core.protocol import (
    POD_LABEL_DEPLOY_REV,
    POD_LABEL_INSTANCE,
    POD_LABEL_SERVICE_ID,
    POD_LABEL_SERVICE_REVISION,
)
from models import Container, ContainerStat, Node, Service
from models.base import utcnow

STATE_KEYS = {
    "error": "Error",
    "exit_code": "ExitCode",
    "pid": "Pid",
    "oom_killed": "OOMKilled",
    "paused": "Paused",
    "restarting": "Restarting",
    "dead": "Dead",
    "running": "Running",
}
# Docker's "never" for StartedAt/FinishedAt.
_ZERO_TIME = "0001-01-01T00:00:00Z"
STAT_DOCUMENTS = ("spec", "cpu", "memory", "network")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def parse_docker_time(value: Any) -> datetime | None:
    """Docker's RFC 3339 time with nanoseconds; None for missing or the zero time."""
    if not isinstance(value, str) or not value or value.startswith(_ZERO_TIME[:4]):
        return None
    text = value.rstrip("Z")
    main, _, fraction = text.partition(".")
    try:
        moment = datetime.fromisoformat(main + (f".{fraction[:6]}" if fraction else ""))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


async def _plain_env_names(session: AsyncSession, service_id: str | None) -> set[str] | None:
    """Env names a container record may keep: its service's plain ``env`` entries.

    An allowlist, not a blocklist: secrets, certificates, ACME challenges, a hook container's
    copy of the pod's env and the env of containers that are not ours (an agent container's
    grid token, say) are never stored.
    """
    if service_id is None:
        return None
    service = await session.get(Service, service_id)
    if service is None:
        return None
    env = service.spec.get("env") or []
    items = env.items() if isinstance(env, dict) else ((str(e).split("=", 1)[0], "") for e in env)
    return {str(name) for name, _ in items}


def _env(raw: Any, shown: set[str] | None) -> list[str]:
    """A service container's entries whose name is shown, plus the master's ``KONTENA_*``."""
    if shown is None:
        return []  # not a service's container: nothing of its env is ours to keep
    return [
        item
        for item in _strings(raw)
        if (name := item.split("=", 1)[0]) in shown or name.startswith("KONTENA_")
    ]


def _volumes(mounts: Any) -> list[dict[str, Any]]:
    volumes = []
    for mount in mounts if isinstance(mounts, list) else []:
        if isinstance(mount, dict):
            volumes.append(
                {
                    "type": mount.get("Type"),
                    "name": mount.get("Name"),
                    "source": mount.get("Source"),
                    "destination": mount.get("Destination"),
                    "mode": mount.get("Mode"),
                    "rw": mount.get("RW"),
                }
            )
    return volumes


def _network_settings(settings: dict[str, Any]) -> dict[str, Any]:
    networks = {
        name: {"ip_address": _dict(net).get("IPAddress"), "gateway": _dict(net).get("Gateway")}
        for name, net in _dict(settings.get("Networks")).items()
    }
    return {"ip_address": settings.get("IPAddress"), "ports": settings.get("Ports"), **networks}


async def _service_of(session: AsyncSession, node: Node, labels: dict[str, Any]) -> str | None:
    service_id = labels.get(POD_LABEL_SERVICE_ID)
    if not isinstance(service_id, str) or not service_id:
        return None
    found: str | None = await session.scalar(
        select(Service.id).where(Service.id == service_id, Service.grid_id == node.grid_id)
    )
    return found


async def save_container(session: AsyncSession, node: Node, data: dict[str, Any]) -> Container:
    """Create or update the node's record of the container described by ``data`` (inspect)."""
    docker_id = _text(data.get("Id"), 64)
    if docker_id is None:
        raise AgentError(400, "container.Id is required")
    config, state = _dict(data.get("Config")), _dict(data.get("State"))
    labels = {str(k): v for k, v in _dict(config.get("Labels")).items()}
    row = await session.scalar(
        select(Container).where(Container.node_id == node.id, Container.container_id == docker_id)
    )
    if row is None:
        row = Container(grid_id=node.grid_id, node_id=node.id, container_id=docker_id)
        session.add(row)
    row.name = (_text(data.get("Name"), 256) or docker_id[:12]).lstrip("/")[:255]
    row.image = _text(config.get("Image"), 512)
    row.service_id = await _service_of(session, node, labels)
    row.instance_number = _int(labels.get(POD_LABEL_INSTANCE))
    row.deploy_rev = _text(labels.get(POD_LABEL_DEPLOY_REV), 64)
    row.service_rev = _text(labels.get(POD_LABEL_SERVICE_REVISION), 64)
    row.state = {key: state.get(docker) for key, docker in STATE_KEYS.items()}
    row.running = bool(state.get("Running"))
    row.started_at = parse_docker_time(state.get("StartedAt"))
    row.finished_at = parse_docker_time(state.get("FinishedAt"))
    settings = _dict(data.get("NetworkSettings"))
    row.info = {
        "cmd": _strings(config.get("Cmd")) or None,
        "env": _env(config.get("Env"), await _plain_env_names(session, row.service_id)),
        "volumes": _volumes(data.get("Mounts")),
        "ip_address": settings.get("IPAddress") or None,
        "hostname": config.get("Hostname"),
        "domainname": config.get("Domainname"),
        "network_settings": _network_settings(settings),
        "health_status": _dict(state.get("Health")).get("Status"),
    }
    return row


@agent_method("/containers/save")
async def save(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``({node, container: <docker inspect>})`` → the container's record."""
    if not params or not isinstance(params[0], dict):
        raise AgentError(400, "param 1 must be an object")
    container = params[0].get("container")
    if not isinstance(container, dict):
        raise AgentError(400, "container must be an object")
    await save_container(session, node, container)
    return {}


@agent_method("/containers/cleanup")
async def cleanup(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(node_id, [docker ids the node still has])`` → records of any other container go."""
    if len(params) < 2 or not isinstance(params[1], list):
        raise AgentError(400, "params must be [node_id, [container ids]]")
    present = [str(cid) for cid in params[1]]
    await session.execute(
        delete(Container)
        .where(Container.node_id == node.id, Container.container_id.not_in(present))
        .execution_options(synchronize_session=False)
    )
    return {}


@agent_method("/containers/event")
async def event(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``({id, status})``: ``destroy`` removes the record; other events are not stored."""
    data = params[0] if params and isinstance(params[0], dict) else {}
    if data.get("status") == "destroy" and isinstance(data.get("id"), str):
        await session.execute(
            delete(Container).where(
                Container.node_id == node.id, Container.container_id == data["id"]
            )
        )
    return {}


@agent_method("/containers/stat")
async def stat(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(stat, …)``: one or more ``{id, spec, cpu, memory, network}`` samples.

    Stats of containers the master has no record of are dropped, as Kontena did.
    """
    samples = {str(p["id"]): p for p in params if isinstance(p, dict) and p.get("id")}
    if not samples:
        return None
    rows = await session.scalars(
        select(Container).where(
            Container.node_id == node.id, Container.container_id.in_(list(samples))
        )
    )
    now = utcnow()  # server time: per-minute metrics line up across nodes
    for row in rows:
        sample = samples[row.container_id]
        documents = {key: _dict(sample.get(key)) for key in STAT_DOCUMENTS}
        row.latest_stats = documents
        row.stats_at = now
        session.add(
            ContainerStat(
                grid_id=node.grid_id,
                node_id=node.id,
                service_id=row.service_id,
                container_id=row.container_id,
                name=row.name,
                created_at=now,
                **documents,
            )
        )
    return None
