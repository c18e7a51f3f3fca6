"""Wire shape of external registries: never the password."""

from __future__ import annotations

import msgspec

from core.registries import RegistryCreate
from models import Grid, Registry

__all__ = ["ExternalRegistry", "ExternalRegistryList", "RegistryCreate", "registry_view"]


class ExternalRegistry(msgspec.Struct):
    """``{id, name, url, username, email}`` with ``id`` = ``grid/host[:port]``."""

    id: str
    name: str
    url: str
    username: str
    email: str | None


class ExternalRegistryList(msgspec.Struct):
    """``{"external_registries": [...]}``."""

    external_registries: list[ExternalRegistry]


def registry_view(grid: Grid, row: Registry) -> ExternalRegistry:
    """Render a registry row."""
    return ExternalRegistry(
        id=f"{grid.name}/{row.name}",
        name=row.name,
        url=row.url,
        username=row.username,
        email=row.email,
    )
