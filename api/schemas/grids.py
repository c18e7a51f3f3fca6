"""Wire shapes of grids: the request bodies (defined with their rules in core) and the grid JSON."""

from __future__ import annotations

from typing import Any

import msgspec

from core.grids import GridCounts, GridCreate, GridFields, GridLogs, GridStats, GridUpdate, Statsd

__all__ = [
    "Grid",
    "GridCreate",
    "GridList",
    "GridLogs",
    "GridStats",
    "GridUpdate",
    "Statsd",
    "grid_view",
]


class StatsView(msgspec.Struct):
    """``stats`` as Kontena rendered it: always a ``statsd`` key, null when off."""

    statsd: dict[str, Any] | None = None


class LogsView(msgspec.Struct):
    """Configured log shipping."""

    forwarder: str
    opts: dict[str, str]


class Grid(msgspec.Struct):
    """The grid JSON (§2.13); ``logs`` appears only when log shipping is configured."""

    id: str
    name: str
    token: str
    initial_size: int
    stats: StatsView
    default_affinity: list[str]
    trusted_subnets: list[str]
    node_count: int
    service_count: int
    container_count: int
    user_count: int
    subnet: str
    supernet: str
    logs: LogsView | msgspec.UnsetType = msgspec.UNSET


class GridList(msgspec.Struct):
    """``GET /v1/grids``."""

    grids: list[Grid]


def grid_view(row: GridFields, token: str, counts: GridCounts) -> Grid:
    """Render a grid row with its plain token and counts."""
    logs: LogsView | msgspec.UnsetType = msgspec.UNSET
    if row.logs:
        logs = LogsView(forwarder=row.logs["forwarder"], opts=dict(row.logs.get("opts") or {}))
    return Grid(
        id=row.name,
        name=row.name,
        token=token,
        initial_size=row.initial_size,
        stats=StatsView(statsd=(row.stats or {}).get("statsd")),
        default_affinity=list(row.default_affinity),
        trusted_subnets=list(row.trusted_subnets),
        node_count=counts.node_count,
        service_count=counts.service_count,
        container_count=counts.container_count,
        user_count=counts.user_count,
        subnet=row.subnet,
        supernet=row.supernet,
        logs=logs,
    )
