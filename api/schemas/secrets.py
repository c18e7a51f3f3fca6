"""Wire shapes of secrets: the value only in the single-secret JSON, never in lists."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from api.schemas.audit_logs import timestamp
from core.secrets import SecretCreate, SecretUpdate, ServiceRef
from models import Grid, GridSecret

__all__ = ["Secret", "SecretCreate", "SecretList", "SecretSummary", "SecretUpdate"]


class SecretService(msgspec.Struct):
    """A service that consumes the secret."""

    id: str
    name: str


class SecretSummary(msgspec.Struct):
    """A secret in ``GET /v1/grids/:grid/secrets``: names and times, no value."""

    id: str
    name: str
    created_at: str
    updated_at: str
    services: list[SecretService]


class Secret(SecretSummary):
    """One secret with its plain value (create, read, update)."""

    value: str


class SecretList(msgspec.Struct):
    """``{"secrets": [...]}``."""

    secrets: list[SecretSummary]


def _services(refs: Sequence[ServiceRef]) -> list[SecretService]:
    return [SecretService(id=ref.id, name=ref.name) for ref in refs]


def secret_summary(grid: Grid, row: GridSecret, refs: Sequence[ServiceRef]) -> SecretSummary:
    """A secret without its value."""
    return SecretSummary(
        id=f"{grid.name}/{row.name}",
        name=row.name,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        services=_services(refs),
    )


def secret_view(grid: Grid, row: GridSecret, value: str, refs: Sequence[ServiceRef]) -> Secret:
    """A secret with its plain value."""
    return Secret(
        id=f"{grid.name}/{row.name}",
        name=row.name,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        services=_services(refs),
        value=value,
    )
