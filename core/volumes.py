"""Grid volumes: Kontena's create rules, look-ups, and delete (refused while services use it).

Reference §2.10. Names are unique per grid; ``scope`` decides the Docker volume names
(core.service_volumes); a deleted volume's Docker volumes are removed by the agents of the nodes
that hold them (``/volumes/notify_update``, then each agent re-lists ``/node_volumes/list``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorTree, Invalid, NotFound
from core.node_rpc import NodeRpcError
from core.service_volumes import find_volume, services_using
from core.services import service_path
from models import Grid, Node, Volume, VolumeInstance

log = logging.getLogger(__name__)

NOTIFY_VOLUMES = "/volumes/notify_update"
SCOPES = ("instance", "stack", "grid")
# Ruby's \w is ASCII; a leading "-" would read as a CLI flag.
NAME_PATTERN = re.compile(r"\A(?!-)[\w-]+\Z", re.ASCII)
NAME_MAX = 255
DRIVER_MAX = 255


class VolumeCreate(msgspec.Struct):
    """``POST /v1/volumes/:grid``; each rule is checked with Kontena's words."""

    name: str | None = None
    scope: str | None = None
    driver: str | None = None
    driver_opts: dict[str, Any] | None = None


def _required(tree: ErrorTree, key: str, value: str | None) -> str | None:
    label = key.replace("_", " ").capitalize()
    if value is None:
        tree[key] = f"{label} is required"
    elif not value.strip():
        tree[key] = f"{label} can't be blank"
    else:
        return value
    return None


def _driver_opts(tree: ErrorTree, opts: dict[str, Any] | None) -> dict[str, str]:
    """Docker takes string options; numbers and booleans are written as strings."""
    result: dict[str, str] = {}
    bad: ErrorTree = {}
    for key, value in (opts or {}).items():
        if isinstance(value, bool):
            result[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            result[key] = str(value)
        else:
            bad[key] = f"Driver opts[{key}] isn't a string"
    if bad:
        tree["driver_opts"] = bad
    return result


def validate(data: VolumeCreate) -> tuple[str, str, str, dict[str, str]]:
    """``(name, scope, driver, driver_opts)`` or a 422 naming every bad field."""
    tree: ErrorTree = {}
    name = _required(tree, "name", data.name)
    if name is not None and len(name) > NAME_MAX:
        tree["name"] = "Name is too long"
    elif name is not None and not NAME_PATTERN.match(name):
        tree["name"] = "Name isn't in the right format"
    scope = _required(tree, "scope", data.scope)
    if scope is not None and scope not in SCOPES:
        tree["scope"] = "Scope isn't an option"
    driver = _required(tree, "driver", data.driver)
    if driver is not None and len(driver) > DRIVER_MAX:
        tree["driver"] = "Driver is too long"
    elif driver is not None and ":" in driver:
        # The node's plugin version is added per node; a pinned tag could never match.
        tree["driver"] = "Driver version tag cannot be used"
    opts = _driver_opts(tree, data.driver_opts)
    if tree or name is None or scope is None or driver is None:
        raise Invalid(tree)
    return name, scope, driver, opts


async def list_volumes(session: AsyncSession, grid: Grid) -> Sequence[Volume]:
    """The grid's volumes by name."""
    query = select(Volume).where(Volume.grid_id == grid.id).order_by(Volume.name)
    return (await session.execute(query)).scalars().all()


async def get_volume(session: AsyncSession, grid: Grid, name: str) -> Volume:
    """The volume ``name`` of ``grid``, or 404 ``Volume <name> not found``."""
    volume = await find_volume(session, grid.id, name)
    if volume is None:
        raise NotFound(f"Volume {name} not found")
    return volume


async def create_volume(session: AsyncSession, grid: Grid, data: VolumeCreate) -> Volume:
    """Add a volume; one per name and grid (a race loses with 409 at the unique index)."""
    name, scope, driver, opts = validate(data)
    if await find_volume(session, grid.id, name) is not None:
        raise Invalid({"name": "Volume with given name already exists"})
    volume = Volume(grid_id=grid.id, name=name, scope=scope, driver=driver, driver_opts=opts)
    session.add(volume)
    await session.flush()
    return volume


async def volume_instances(session: AsyncSession, volume: Volume) -> Sequence[VolumeInstance]:
    """The Docker volumes recorded for ``volume`` on nodes."""
    query = (
        select(VolumeInstance)
        .where(VolumeInstance.volume_id == volume.id)
        .order_by(VolumeInstance.name, VolumeInstance.node_id)
    )
    return (await session.execute(query)).scalars().all()


def _ruby_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


async def delete_volume(session: AsyncSession, grid: Grid, volume: Volume) -> list[str]:
    """Remove an unused volume; returns the ids of the nodes that hold its Docker volumes.

    A volume some service still mounts gets 422 ``{"<name>": "Volume still in use in
    services [...]"}``, naming every such service.
    """
    using = await services_using(session, grid.id, volume.name)
    if using:
        paths = [service_path(grid.name, service) for service in using]
        raise Invalid({volume.name: f"Volume still in use in services {_ruby_list(paths)}"})
    nodes = sorted({instance.node_id for instance in await volume_instances(session, volume)})
    await session.delete(volume)  # its volume instances go with it (ON DELETE CASCADE)
    await session.flush()
    return nodes


async def volume_usage(
    session: AsyncSession, grid: Grid, volume: Volume
) -> tuple[list[tuple[str, str]], list[str]]:
    """``([(node name, docker volume name)], [service path])`` for the volume's JSON."""
    rows = await session.execute(
        select(Node.name, VolumeInstance.name)
        .join(Node, Node.id == VolumeInstance.node_id)
        .where(VolumeInstance.volume_id == volume.id)
        .order_by(VolumeInstance.name, Node.name)
    )
    instances = [(node_name, name) for node_name, name in rows]
    using = await services_using(session, grid.id, volume.name)
    return instances, [service_path(grid.name, service) for service in using]


class VolumeNotifier(Protocol):
    """The part of the node RPC a volume delete uses."""

    async def notify(self, node: str, method: str, params: list[Any]) -> None:
        """Send the node's agent a notification."""


async def notify_nodes_removed(rpc: VolumeNotifier, node_id: str) -> None:
    """Tell a node's agent to re-list its volumes, removing the Docker volumes of deleted ones.

    Best effort, after the commit: an offline agent keeps the Docker volume (data is never
    removed by guesswork) until a later delete notifies it again.
    """
    try:
        await rpc.notify(node_id, NOTIFY_VOLUMES, ["remove"])
    except NodeRpcError as exc:
        log.info("node %s not told about a removed volume: %s", node_id, exc)
