"""Handlers for what agents send the master: ``/nodes/update``, ``/nodes/stats`` (§7.3).

Each handler gets a session, the sending connection's node and the params; it returns the
result of a request (ignored for notifications) and raises :class:`AgentError` to answer with
an error. The agent socket commits after each handler. Later issues register more methods
(service pods, containers) with :func:`agent_method`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models import Node, NodeStat
from models.base import utcnow

Handler = Callable[[AsyncSession, Node, list[Any]], Awaitable[Any]]

HANDLERS: dict[str, Handler] = {}


class AgentError(Exception):
    """An error answer to an agent request: ``{code, message}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def agent_method(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for an agent → master method."""

    def register(handler: Handler) -> Handler:
        HANDLERS[name] = handler
        return handler

    return register


def _param(params: list[Any], index: int) -> dict[str, Any]:
    if len(params) <= index or not isinstance(params[index], dict):
        raise AgentError(400, f"param {index + 1} must be an object")
    value: dict[str, Any] = params[index]
    return value


def _int(value: Any) -> int | None:
    # bool is an int in Python, and Docker's `MemoryLimit` is a bool: not a size.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any, limit: int = 255) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _drivers(value: Any) -> list[dict[str, Any]]:
    """``[{name, version}]`` from a list of objects or of plain names."""
    if not isinstance(value, list):
        return []
    drivers: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, str):
            drivers.append({"name": item, "version": None})
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            drivers.append({"name": item["name"], "version": item.get("version")})
    return drivers


def apply_docker_info(node: Node, info: dict[str, Any]) -> None:
    """Fill the node's attributes from Docker ``info`` plus the agent's own fields."""
    node.os = _str(info.get("OperatingSystem"))
    node.engine_root_dir = _str(info.get("DockerRootDir"), 1024)
    node.driver = _str(info.get("Driver"), 64)
    node.kernel_version = _str(info.get("KernelVersion"))
    node.mem_total = _int(info.get("MemTotal"))
    node.mem_limit = _int(info.get("MemoryLimit"))
    node.cpus = _int(info.get("NCPU"))
    node.docker_version = _str(info.get("ServerVersion"), 64)
    node.agent_version = _str(info.get("AgentVersion"), 64)
    node.public_ip = _str(info.get("PublicIp"), 64)
    node.private_ip = _str(info.get("PrivateIp"), 64)
    drivers = info.get("Drivers")
    if isinstance(drivers, dict):
        node.volume_drivers = _drivers(drivers.get("Volume"))
        node.network_drivers = _drivers(drivers.get("Network"))
    node.updated = True


@agent_method("/nodes/update")
async def update_node(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(node_id, docker_info)`` → node attributes, ``updated=true`` (status online)."""
    apply_docker_info(node, _param(params, 1))
    return {}


STAT_FIELDS = ("memory", "load", "cpu", "network", "usage")


@agent_method("/nodes/stats")
async def save_stats(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(node_id, stats)`` → a NodeStat row and the node's ``latest_stats``."""
    stats = _param(params, 1)
    values = {k: stats[k] for k in STAT_FIELDS if isinstance(stats.get(k), dict)}
    filesystem = stats.get("filesystem")
    session.add(
        NodeStat(
            node_id=node.id,
            grid_id=node.grid_id,
            filesystem=filesystem if isinstance(filesystem, list) else [],
            # Server time, not the agent's: per-minute metrics must line up across nodes.
            created_at=utcnow(),
            **values,
        )
    )
    node.latest_stats = stats
    return None


async def handle_agent_message(
    session: AsyncSession, node: Node, method: str, params: list[Any]
) -> Any:
    """Run the handler of ``method``; unknown methods get Kontena's 501."""
    handler = HANDLERS.get(method)
    if handler is None:
        raise AgentError(501, "service not implemented")
    return await handler(session, node, params)
