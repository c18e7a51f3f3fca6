"""Node and grid metrics (per-minute aggregates of node stats) and container stats ordering."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Float, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.containers import list_containers
from core.errors import Invalid
from models import NodeStat

__all__ = [
    "MAX_WINDOW",
    "ContainerStat",
    "ContainerStatItem",
    "Metrics",
    "container_stats",
    "grid_metrics",
    "node_metrics",
    "parse_limit",
    "parse_sort",
    "parse_window",
    "sort_container_stats",
]

SORTS = ("cpu", "memory", "rx_bytes", "tx_bytes")

DEFAULT_WINDOW = timedelta(hours=1)
# A bound on what one request aggregates: a day is 1,440 points per node.
MAX_WINDOW = timedelta(hours=24)
MEMORY_FIELDS = ("used", "total", "free", "active", "inactive", "cached", "buffers")
SIDES = ("internal", "external")
COUNTERS = ("rx_bytes", "tx_bytes")


class CpuPoint(msgspec.Struct):
    """CPU use in percent (user+system+nice) and cores."""

    used: float
    cores: int


class MemoryPoint(msgspec.Struct):
    """Memory in bytes."""

    used: int
    total: int
    free: int
    active: int
    inactive: int
    cached: int
    buffers: int


class FilesystemPoint(msgspec.Struct):
    """Filesystem bytes, summed over the reported filesystems."""

    used: int
    total: int


class NetworkSide(msgspec.Struct):
    """Cumulative counters and rates of one side (internal/external) of a node's network."""

    interfaces: list[str]
    rx_bytes: int
    rx_bytes_per_second: float | None
    tx_bytes: int
    tx_bytes_per_second: float | None


class NetworkPoint(msgspec.Struct):
    """Both sides of the network."""

    internal: NetworkSide
    external: NetworkSide


class MetricsPoint(msgspec.Struct):
    """One minute of metrics."""

    timestamp: datetime
    cpu: CpuPoint
    memory: MemoryPoint
    filesystem: FilesystemPoint
    network: NetworkPoint


class Metrics(msgspec.Struct):
    """``GET …/metrics``: the window and one point per minute that has stats."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    stats: list[MetricsPoint]


def _parse_time(name: str, raw: str) -> datetime:
    # A "+" in an unencoded query string arrives as a space.
    text = raw.strip().replace(" ", "+")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid({name: f"{name.capitalize()} isn't a valid time"}) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_window(
    raw_from: str | None, raw_to: str | None, *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """``from``/``to`` query parameters: default to the last hour; at most 24 hours apart."""
    to = _parse_time("to", raw_to) if raw_to else (now or datetime.now(UTC))
    start = _parse_time("from", raw_from) if raw_from else to - DEFAULT_WINDOW
    if start > to:
        raise Invalid({"from": "From must be before to"})
    if to - start > MAX_WINDOW:
        raise Invalid({"from": "From must be within 24 hours of to"})
    return start, to


def dialect_of(session: AsyncSession) -> str:
    """The session's SQL dialect name (postgresql or sqlite)."""
    return session.get_bind().dialect.name


def minute_of(dialect: str, column: Any = NodeStat.created_at) -> ColumnElement[Any]:
    """``column`` truncated to its UTC minute, in SQL."""
    if dialect == "postgresql":
        return func.date_trunc("minute", func.timezone("UTC", column))
    return func.strftime("%Y-%m-%d %H:%M:00", column)


def epoch_of(dialect: str, column: Any = NodeStat.created_at) -> ColumnElement[Any]:
    """``column`` as seconds since the epoch, in SQL."""
    if dialect == "postgresql":
        return func.extract("epoch", column)
    return (func.julianday(column) - 2440587.5) * 86400.0


# Sums of one key over a row's filesystem list, written out: nothing here comes from input.
_FILESYSTEM_SUM = {
    ("postgresql", "used"): (
        "(SELECT COALESCE(SUM((fs ->> 'used')::float), 0) FROM jsonb_array_elements("
        "CASE WHEN jsonb_typeof(node_stats.filesystem) = 'array' "
        "THEN node_stats.filesystem ELSE '[]'::jsonb END) AS fs)"
    ),
    ("postgresql", "total"): (
        "(SELECT COALESCE(SUM((fs ->> 'total')::float), 0) FROM jsonb_array_elements("
        "CASE WHEN jsonb_typeof(node_stats.filesystem) = 'array' "
        "THEN node_stats.filesystem ELSE '[]'::jsonb END) AS fs)"
    ),
    ("sqlite", "used"): (
        "(SELECT COALESCE(SUM(json_extract(value, '$.used')), 0) "
        "FROM json_each(node_stats.filesystem))"
    ),
    ("sqlite", "total"): (
        "(SELECT COALESCE(SUM(json_extract(value, '$.total')), 0) "
        "FROM json_each(node_stats.filesystem))"
    ),
}


def _filesystem_sum(dialect: str, key: str) -> ColumnElement[Any]:
    """Sum of ``key`` over the row's filesystem list (an array in the JSON column)."""
    return literal_column(_FILESYSTEM_SUM[(dialect, key)], Float)


def json_number(expr: Any) -> ColumnElement[Any]:
    """A JSON member as a float in SQL; 0 when it is missing."""
    return func.coalesce(expr.as_float(), 0.0)


def _columns(dialect: str) -> list[ColumnElement[Any]]:
    """Per (node, minute) averages, as in Kontena's aggregation of HostNodeStat."""
    cpu = NodeStat.cpu
    columns: list[ColumnElement[Any]] = [
        func.avg(epoch_of(dialect)).label("epoch"),
        func.avg(json_number(cpu["num_cores"])).label("cores"),
        func.avg(
            json_number(cpu["user"]) + json_number(cpu["system"]) + json_number(cpu["nice"])
        ).label("cpu"),
        func.avg(_filesystem_sum(dialect, "used")).label("fs_used"),
        func.avg(_filesystem_sum(dialect, "total")).label("fs_total"),
    ]
    columns += [func.avg(json_number(NodeStat.memory[f])).label(f"mem_{f}") for f in MEMORY_FIELDS]
    for side in SIDES:
        for counter in COUNTERS:
            value = NodeStat.network[(side, counter)].as_float()
            rate = NodeStat.network[(side, f"{counter}_per_second")].as_float()
            columns.append(func.avg(value).label(f"{side}_{counter}"))
            columns.append(func.avg(rate).label(f"{side}_{counter}_rate"))
    return columns


def as_minute(value: Any) -> datetime:
    """A minute bucket from SQL (datetime on PostgreSQL, text on SQLite) as UTC datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def _node_minutes(
    session: AsyncSession, start: datetime, end: datetime, **where: str
) -> dict[str, list[dict[str, Any]]]:
    """Per-node lists of per-minute averages between ``start`` and ``end``, oldest first."""
    dialect = dialect_of(session)
    minute = minute_of(dialect).label("minute")
    stmt = (
        select(NodeStat.node_id, minute, *_columns(dialect))
        .where(NodeStat.created_at >= start, NodeStat.created_at <= end)
        .group_by(NodeStat.node_id, minute)
        .order_by(NodeStat.node_id, minute)
    )
    for column, value in where.items():
        stmt = stmt.where(getattr(NodeStat, column) == value)
    per_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in await session.execute(stmt):
        # PostgreSQL averages numerics as Decimal; the arithmetic below is in floats.
        bucket = {k: float(v) if isinstance(v, Decimal) else v for k, v in row._mapping.items()}
        bucket["minute"] = as_minute(bucket["minute"])
        per_node[row.node_id].append(bucket)
    return per_node


async def _interfaces(
    session: AsyncSession, start: datetime, end: datetime, **where: str
) -> dict[str, dict[str, list[str]]]:
    """Each node's interface names per side, from its latest stats in the window."""
    stmt = (
        select(NodeStat.node_id, NodeStat.network)
        .where(NodeStat.created_at >= start, NodeStat.created_at <= end)
        .order_by(NodeStat.id)
    )
    for column, value in where.items():
        stmt = stmt.where(getattr(NodeStat, column) == value)
    latest: dict[str, dict[str, list[str]]] = {}
    # Only the newest row per node matters; rows are small and the window is bounded.
    for node_id, network in await session.execute(stmt):
        latest[node_id] = {
            side: list(((network or {}).get(side) or {}).get("interfaces") or []) for side in SIDES
        }
    return latest


def _add_rates(buckets: list[dict[str, Any]]) -> None:
    """Fill per-second rates the agent did not send from consecutive minutes of one node."""
    previous: dict[str, Any] | None = None
    for bucket in buckets:
        for side in SIDES:
            for counter in COUNTERS:
                key = f"{side}_{counter}"
                if bucket[f"{key}_rate"] is not None:
                    continue
                if previous is None or bucket[key] is None or previous[key] is None:
                    continue
                elapsed = bucket["epoch"] - previous["epoch"]
                if elapsed > 0:
                    # A counter that went down (agent or host restart) gives no rate, not < 0.
                    bucket[f"{key}_rate"] = max(0.0, (bucket[key] - previous[key]) / elapsed)
        previous = bucket


def _total(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _point(
    minute: datetime, buckets: list[dict[str, Any]], names: dict[str, list[str]]
) -> MetricsPoint:
    """Sum one minute over nodes (CPU% averaged, cores summed), as Kontena's grid metrics."""
    cpu = sum(float(b["cpu"]) for b in buckets) / len(buckets)

    def whole(key: str) -> int:
        return round(sum(float(b[key] or 0) for b in buckets))

    def side(name: str) -> NetworkSide:
        rx_rate = _total([b[f"{name}_rx_bytes_rate"] for b in buckets])
        tx_rate = _total([b[f"{name}_tx_bytes_rate"] for b in buckets])
        return NetworkSide(
            interfaces=names.get(name, []),
            rx_bytes=whole(f"{name}_rx_bytes"),
            rx_bytes_per_second=None if rx_rate is None else round(rx_rate, 2),
            tx_bytes=whole(f"{name}_tx_bytes"),
            tx_bytes_per_second=None if tx_rate is None else round(tx_rate, 2),
        )

    return MetricsPoint(
        timestamp=minute,
        cpu=CpuPoint(used=round(cpu, 2), cores=whole("cores")),
        memory=MemoryPoint(**{f: whole(f"mem_{f}") for f in MEMORY_FIELDS}),
        filesystem=FilesystemPoint(used=whole("fs_used"), total=whole("fs_total")),
        network=NetworkPoint(internal=side("internal"), external=side("external")),
    )


async def _metrics(session: AsyncSession, start: datetime, end: datetime, **where: str) -> Metrics:
    # One extra minute before the window gives the first minute a predecessor for its rates.
    per_node = await _node_minutes(session, start - timedelta(minutes=2), end, **where)
    interfaces = await _interfaces(session, start, end, **where)
    first = start.replace(second=0, microsecond=0)
    minutes: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    names: dict[datetime, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for node_id, buckets in per_node.items():
        _add_rates(buckets)
        for bucket in buckets:
            if bucket["minute"] < first:
                continue
            minutes[bucket["minute"]].append(bucket)
            for side in SIDES:
                names[bucket["minute"]][side].update(interfaces.get(node_id, {}).get(side, []))
    points = [
        _point(minute, minutes[minute], {s: sorted(v) for s, v in names[minute].items()})
        for minute in sorted(minutes)
    ]
    return Metrics(from_=start, to=end, stats=points)


async def node_metrics(
    session: AsyncSession, node_id: str, start: datetime, end: datetime
) -> Metrics:
    """One node's metrics, one point per minute with stats between ``start`` and ``end``."""
    return await _metrics(session, start, end, node_id=node_id)


async def grid_metrics(
    session: AsyncSession, grid_id: str, start: datetime, end: datetime
) -> Metrics:
    """A grid's metrics: memory, network and disk summed over nodes, CPU averaged."""
    return await _metrics(session, start, end, grid_id=grid_id)


class ContainerStat(msgspec.Struct):
    """A running container and its latest stats document (None before the first one)."""

    name: str
    stats: dict[str, Any] | None = None


class ContainerStatItem(msgspec.Struct):
    """One entry of ``GET …/stats`` (§2.12); cpu/memory/network are null without stats."""

    container_id: str
    cpu: dict[str, Any] | None
    memory: dict[str, Any] | None
    network: dict[str, Any] | None


def parse_sort(raw: str | None) -> str:
    """``sort``: cpu (default), memory, rx_bytes or tx_bytes; anything else is a 422."""
    if raw is None or not raw.strip():
        return "cpu"
    if raw not in SORTS:
        raise Invalid({"sort": "Sort isn't an option"})
    return raw


def parse_limit(raw: str | None) -> int | None:
    """``limit``: absent means all; otherwise a non-negative integer."""
    if raw is None or not raw.strip():
        return None
    try:
        limit = int(raw.strip())
    except ValueError:
        raise Invalid({"limit": "Limit isn't an integer"}) from None
    if limit < 0:
        raise Invalid({"limit": "Limit is too small"})
    return limit


def num_cores(mask: str | None) -> int | None:
    """Cores of a cpuset mask such as ``0-3`` or ``0,2``: the last number plus one."""
    numbers = "".join(c if c.isdigit() else " " for c in mask or "").split()
    return int(numbers[-1]) + 1 if numbers else None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _sort_value(stat: ContainerStat, sort: str) -> float:
    doc = stat.stats
    if not doc:
        return 0.0
    if sort == "memory":
        return _number((doc.get("memory") or {}).get("usage"))
    if sort in ("rx_bytes", "tx_bytes"):
        network = doc.get("network") or {}
        return sum(_number((network.get(side) or {}).get(sort)) for side in SIDES)
    return _number((doc.get("cpu") or {}).get("usage_pct"))


def _item(stat: ContainerStat) -> ContainerStatItem:
    doc = stat.stats
    if not doc:
        return ContainerStatItem(container_id=stat.name, cpu=None, memory=None, network=None)
    spec = doc.get("spec") or {}
    cpu, memory = doc.get("cpu") or {}, doc.get("memory") or {}
    return ContainerStatItem(
        container_id=stat.name,
        cpu={
            "usage": cpu.get("usage_pct"),
            "limit": (spec.get("cpu") or {}).get("limit"),
            "num_cores": num_cores((spec.get("cpu") or {}).get("mask")),
        },
        memory={"usage": memory.get("usage"), "limit": (spec.get("memory") or {}).get("limit")},
        network=doc.get("network"),
    )


def sort_container_stats(
    stats: Sequence[ContainerStat], sort: str, limit: int | None
) -> list[ContainerStatItem]:
    """Largest first by ``sort`` (containers without stats count as 0), cut at ``limit``."""
    ordered = sorted(stats, key=lambda s: _sort_value(s, sort), reverse=True)
    if limit is not None:
        ordered = ordered[:limit]
    return [_item(s) for s in ordered]


async def container_stats(
    session: AsyncSession,
    grid_id: str,
    node_id: str | None = None,
    service_id: str | None = None,
) -> list[ContainerStat]:
    """Running containers of the grid (or node, or service) with their latest stats."""
    rows = await list_containers(
        session, grid_id, node_id=node_id, service_id=service_id, running_only=True
    )
    return [ContainerStat(name=row.name, stats=row.latest_stats or None) for row, _node in rows]
