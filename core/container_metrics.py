"""Service metrics: per-minute aggregates of its containers' stats (Kontena's ContainerStat).

Per minute and container the samples are averaged; then the minute sums the containers
(CPU percent, memory, network) and counts each node's cores once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.node_metrics import (
    COUNTERS,
    SIDES,
    CpuPoint,
    NetworkPoint,
    NetworkSide,
    as_minute,
    dialect_of,
    json_number,
    minute_of,
    num_cores,
)
from models import ContainerStat

__all__ = ["ServiceMetrics", "service_metrics"]


class ServiceMemoryPoint(msgspec.Struct):
    """Memory of the service's containers in bytes: used and the sum of their limits."""

    used: int
    total: int


class ServiceMetricsPoint(msgspec.Struct):
    """One minute of a service's metrics."""

    timestamp: datetime
    cpu: CpuPoint
    memory: ServiceMemoryPoint
    network: NetworkPoint


class ServiceMetrics(msgspec.Struct):
    """``GET /v1/services/…/metrics``: the window and one point per minute with stats."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    stats: list[ServiceMetricsPoint]


def _columns() -> list[ColumnElement[Any]]:
    """Per (container, minute) averages of the sample documents."""
    columns: list[ColumnElement[Any]] = [
        func.avg(json_number(ContainerStat.cpu["usage_pct"])).label("cpu"),
        func.avg(json_number(ContainerStat.memory["usage"])).label("mem_used"),
        func.max(json_number(ContainerStat.spec[("memory", "limit")])).label("mem_total"),
        func.max(ContainerStat.spec[("cpu", "mask")].as_string()).label("mask"),
    ]
    for side in SIDES:
        for counter in COUNTERS:
            for key in (counter, f"{counter}_per_second"):
                value = json_number(ContainerStat.network[(side, key)])
                columns.append(func.avg(value).label(f"{side}_{key}"))
    return columns


def _float(value: Any) -> float:
    # PostgreSQL averages numerics as Decimal.
    return float(value) if isinstance(value, Decimal | int | float) else 0.0


async def _interfaces(
    session: AsyncSession, service_id: str, start: datetime, end: datetime
) -> dict[str, list[str]]:
    """Interface names per side, from the service's newest sample in the window."""
    network = await session.scalar(
        select(ContainerStat.network)
        .where(
            ContainerStat.service_id == service_id,
            ContainerStat.created_at >= start,
            ContainerStat.created_at <= end,
        )
        .order_by(ContainerStat.id.desc())
        .limit(1)
    )
    return {
        side: [str(n) for n in ((network or {}).get(side) or {}).get("interfaces") or []]
        for side in SIDES
    }


def _point(
    minute: datetime, buckets: list[dict[str, Any]], interfaces: dict[str, list[str]]
) -> ServiceMetricsPoint:
    cores_per_node: dict[str, int] = {}
    for bucket in buckets:
        cores = num_cores(bucket["mask"]) or 1
        cores_per_node[bucket["node_id"]] = max(cores, cores_per_node.get(bucket["node_id"], 0))

    def total(key: str) -> float:
        return sum(_float(b[key]) for b in buckets)

    def side(name: str) -> NetworkSide:
        return NetworkSide(
            interfaces=interfaces.get(name, []),
            rx_bytes=round(total(f"{name}_rx_bytes")),
            rx_bytes_per_second=round(total(f"{name}_rx_bytes_per_second"), 2),
            tx_bytes=round(total(f"{name}_tx_bytes")),
            tx_bytes_per_second=round(total(f"{name}_tx_bytes_per_second"), 2),
        )

    return ServiceMetricsPoint(
        timestamp=minute,
        cpu=CpuPoint(used=round(total("cpu"), 2), cores=sum(cores_per_node.values())),
        memory=ServiceMemoryPoint(used=round(total("mem_used")), total=round(total("mem_total"))),
        network=NetworkPoint(internal=side("internal"), external=side("external")),
    )


async def service_metrics(
    session: AsyncSession, service_id: str, start: datetime, end: datetime
) -> ServiceMetrics:
    """One point per minute between ``start`` and ``end`` in which the service had stats."""
    minute = minute_of(dialect_of(session), ContainerStat.created_at).label("minute")
    stmt = (
        select(ContainerStat.node_id, ContainerStat.container_id, minute, *_columns())
        .where(
            ContainerStat.service_id == service_id,
            ContainerStat.created_at >= start,
            ContainerStat.created_at <= end,
        )
        .group_by(ContainerStat.node_id, ContainerStat.container_id, minute)
    )
    minutes: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for row in await session.execute(stmt):
        bucket = dict(row._mapping)
        minutes[as_minute(bucket["minute"])].append(bucket)
    interfaces = await _interfaces(session, service_id, start, end)
    points = [_point(m, minutes[m], interfaces) for m in sorted(minutes)]
    return ServiceMetrics(from_=start, to=end, stats=points)
