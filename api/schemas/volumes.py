"""Wire shape of grid volumes (reference §2.13 ``volume``)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from api.schemas.audit_logs import timestamp
from core.volumes import VolumeCreate
from models import Grid, Volume

__all__ = ["VolumeCreate", "VolumeInstanceView", "VolumeList", "VolumeView", "volume_view"]


class VolumeInstanceView(msgspec.Struct):
    """A Docker volume of the volume on one node: ``{node, name}``."""

    node: str
    name: str


class VolumeServiceView(msgspec.Struct):
    """A service that mounts the volume: ``{id}`` = ``grid/stack/service``."""

    id: str


class VolumeView(msgspec.Struct):
    """``{id, name, scope, driver, driver_opts, created_at, updated_at, instances, services}``."""

    id: str
    name: str
    scope: str
    driver: str
    driver_opts: dict[str, str]
    created_at: str
    updated_at: str
    instances: list[VolumeInstanceView]
    services: list[VolumeServiceView]


class VolumeList(msgspec.Struct):
    """``{"volumes": [...]}``."""

    volumes: list[VolumeView]


def volume_view(
    grid: Grid,
    row: Volume,
    instances: Sequence[tuple[str, str]] = (),
    services: Sequence[str] = (),
) -> VolumeView:
    """Render a volume with its ``(node name, docker name)`` instances and service paths."""
    return VolumeView(
        id=f"{grid.name}/{row.name}",
        name=row.name,
        scope=row.scope,
        driver=row.driver,
        driver_opts={str(k): str(v) for k, v in (row.driver_opts or {}).items()},
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        instances=[VolumeInstanceView(node=node, name=name) for node, name in instances],
        services=[VolumeServiceView(id=path) for path in services],
    )
