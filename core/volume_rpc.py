"""Agent → master volume method (reference §7.3): ``/node_volumes/list``.

The agent asks for it when told ``/volumes/notify_update`` (a grid volume was deleted) and
removes the Kontena-labelled Docker volumes the list no longer names.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.node_updates import agent_method
from core.service_volumes import VolumeRef, volume_labels
from models import Grid, Node, Volume, VolumeInstance


async def node_volumes(session: AsyncSession, node: Node) -> list[dict[str, Any]]:
    """The Docker volumes the node should hold: ``{name, volume_id, driver, labels...}``."""
    grid = await session.get(Grid, node.grid_id)
    grid_name = grid.name if grid is not None else ""
    rows = await session.execute(
        select(VolumeInstance.name, Volume)
        .join(Volume, Volume.id == VolumeInstance.volume_id)
        .where(VolumeInstance.node_id == node.id)
        .order_by(VolumeInstance.name)
    )
    volumes = []
    for name, volume in rows:
        ref = VolumeRef(volume.id, volume.name, volume.scope, volume.driver, volume.driver_opts)
        volumes.append(
            {
                "name": name,
                "volume_id": f"{grid_name}/{volume.name}",
                "driver": volume.driver,
                "driver_opts": {str(k): str(v) for k, v in (volume.driver_opts or {}).items()},
                "labels": volume_labels(grid_name, ref),
            }
        )
    return volumes


@agent_method("/node_volumes/list")
async def list_volumes(session: AsyncSession, node: Node, params: list[Any]) -> Any:
    """``(node_id)`` → ``{"volumes": [volume]}`` for the connection's node."""
    return {"volumes": await node_volumes(session, node)}
