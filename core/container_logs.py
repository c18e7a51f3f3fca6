"""Container logs: store what agents ship exactly once, select them for reading, retention.

Reading (limit/from/since/follow) is core.logs, shared with event logs. Followers on any API
replica poll the table by id, so ids must become visible in order: see ``_serialize_grid``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, func, insert, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.logs import NULL_STACK, LogTable
from core.protocol import LOG_STREAMS, LogLine, parse_log_time
from models import ContainerLog, ContainerLogCursor, Node, Service

CONTAINER_LOG_TABLE = LogTable(id=ContainerLog.id, created_at=ContainerLog.created_at)
# Docker splits lines at 16 KiB; a longer line (another driver) is cut, not refused.
MAX_LINE_CHARS = 65_536
Position = tuple[int, int]  # (Docker timestamp in ns, ordinal among lines sharing it)


def _time(time_ns: int) -> datetime:
    return datetime.fromtimestamp(time_ns / 1_000_000_000, UTC)


async def log_cursors(
    session: AsyncSession, node: Node, container_id: str
) -> dict[str, list[int] | None]:
    """Where each stream of a container stands: ``{stream: [time_ns, seq] | None}``."""
    rows = (
        await session.execute(
            select(ContainerLogCursor).where(
                ContainerLogCursor.node_id == node.id,
                ContainerLogCursor.container_id == container_id,
            )
        )
    ).scalars()
    found: dict[str, list[int] | None] = dict.fromkeys(LOG_STREAMS)
    for row in rows:
        found[row.stream] = [row.time_ns, row.seq]
    return found


async def _serialize_grid(session: AsyncSession, grid_id: str) -> None:
    # Followers read "every id above the last one I saw". With concurrent writers a bigger id
    # can commit before a smaller one, and a follower would skip the smaller one for good
    # (Kontena #959). One writer per grid at a time makes ids commit in order within a grid;
    # the lock ends with the transaction. SQLite already allows one writer only.
    if session.get_bind().dialect.name == "postgresql":
        key = func.hashtext(literal(f"container_logs:{grid_id}"))
        await session.execute(select(func.pg_advisory_xact_lock(key)))


async def _locked_cursors(
    session: AsyncSession, node: Node, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], ContainerLogCursor]:
    containers = sorted({container for container, _ in keys})
    rows = (
        await session.execute(
            select(ContainerLogCursor)
            .where(
                ContainerLogCursor.node_id == node.id,
                ContainerLogCursor.container_id.in_(containers),
            )
            .with_for_update()
        )
    ).scalars()
    return {(row.container_id, row.stream): row for row in rows}


async def _services(
    session: AsyncSession, grid_id: str, ids: set[str]
) -> dict[str, tuple[str, str]]:
    rows = await session.execute(
        select(Service.id, Service.stack, Service.name).where(
            Service.grid_id == grid_id, Service.id.in_(sorted(ids))
        )
    )
    return {row.id: (row.stack, row.name) for row in rows}


def _storable(line: LogLine) -> bool:
    return (
        line.type in LOG_STREAMS
        and 0 < len(line.id) <= 64
        and 0 <= line.instance_number < 2**31
        and 0 <= line.seq < 2**31
    )


async def store_batch(
    session: AsyncSession, node: Node, lines: Sequence[LogLine], oldest: datetime | None = None
) -> int:
    """Store the lines not stored yet, in order; returns how many rows were added.

    A line at or before its stream's cursor was stored by an earlier (re-sent) batch and is
    skipped. Lines of services outside the node's grid or older than ``oldest`` (retention)
    are dropped but still move the cursor, so they are not re-sent; malformed ones (unknown
    stream, oversized id or numbers) are dropped outright.
    """
    # What cannot be stored at all (not a Docker stream, ids longer than Docker's) is dropped
    # before it could reach a cursor.
    lines = [line for line in lines if _storable(line)]
    if not lines:
        return 0
    await _serialize_grid(session, node.grid_id)
    keys = {(line.id, line.type) for line in lines}
    cursors = await _locked_cursors(session, node, keys)
    services = await _services(session, node.grid_id, {line.service_id for line in lines})
    positions: dict[tuple[str, str], Position] = {
        key: (row.time_ns, row.seq) for key, row in cursors.items()
    }
    rows: list[dict[str, Any]] = []
    for line in lines:
        key = (line.id, line.type)
        position = (parse_log_time(line.time), line.seq)
        if key in positions and position <= positions[key]:
            continue
        positions[key] = position
        created_at = _time(position[0])
        service = services.get(line.service_id)
        if service is None:
            continue
        if oldest is not None and created_at < oldest:
            continue
        rows.append(
            {
                "grid_id": node.grid_id,
                "service_id": line.service_id,
                "stack": service[0],
                "service": service[1],
                "node": node.name,
                "container_id": line.id[:64],
                "name": line.name[:255],
                "instance_number": line.instance_number,
                "type": line.type,
                "data": line.data[:MAX_LINE_CHARS],
                "created_at": created_at,
            }
        )
    if rows:
        # Ordered by parameter: SQLAlchemy then makes the server draw ids in list order.
        stmt = insert(ContainerLog).returning(ContainerLog.id, sort_by_parameter_order=True)
        await session.execute(stmt, rows)
    for key, (time_ns, seq) in positions.items():
        cursor = cursors.get(key)
        if cursor is None:
            session.add(
                ContainerLogCursor(
                    node_id=node.id, container_id=key[0], stream=key[1], time_ns=time_ns, seq=seq
                )
            )
        elif (cursor.time_ns, cursor.seq) != (time_ns, seq):
            cursor.time_ns, cursor.seq = time_ns, seq
    return len(rows)


# --- reading ---------------------------------------------------------------------------


def grid_container_log_select(
    grid_id: str,
    *,
    containers: Sequence[str] = (),
    nodes: Sequence[str] = (),
    services: Sequence[str] = (),
) -> Select[ContainerLog]:
    """A grid's lines, narrowed by container names, node names and ``[stack/]service`` names."""
    stmt = select(ContainerLog).where(ContainerLog.grid_id == grid_id)
    if containers:
        stmt = stmt.where(ContainerLog.name.in_(list(containers)))
    if nodes:
        stmt = stmt.where(ContainerLog.node.in_(list(nodes)))
    if services:
        clauses: list[ColumnElement[bool]] = []
        for path in services:
            stack, _, service = path.rpartition("/")
            clauses.append(
                and_(ContainerLog.stack == (stack or NULL_STACK), ContainerLog.service == service)
            )
        stmt = stmt.where(or_(*clauses))
    return stmt


def service_container_log_select(
    service_id: str, *, containers: Sequence[str] = (), instances: Sequence[int] = ()
) -> Select[ContainerLog]:
    """One service's lines (by service id: a re-created namesake starts empty)."""
    stmt = select(ContainerLog).where(ContainerLog.service_id == service_id)
    if containers:
        stmt = stmt.where(ContainerLog.name.in_(list(containers)))
    if instances:
        stmt = stmt.where(ContainerLog.instance_number.in_(list(instances)))
    return stmt


def stack_container_log_select(
    grid_id: str, stack: str, *, containers: Sequence[str] = ()
) -> Select[ContainerLog]:
    """The lines of every service of a stack (services whose ``stack`` column is ``stack``)."""
    stmt = select(ContainerLog).where(ContainerLog.grid_id == grid_id, ContainerLog.stack == stack)
    if containers:
        stmt = stmt.where(ContainerLog.name.in_(list(containers)))
    return stmt


# --- retention -------------------------------------------------------------------------


async def prune_container_logs(
    session: AsyncSession, now: datetime, max_age: timedelta, max_lines: int
) -> int:
    """Delete lines older than ``max_age`` and all but the newest ``max_lines`` (0: no cap).

    Cursors unused for ``max_age`` go too: their containers are gone or silent, and a line
    shipped again for them would be older than the age limit and dropped.
    """
    deleted = 0
    result = await session.execute(
        delete(ContainerLog)
        .where(ContainerLog.created_at < now - max_age)
        .execution_options(synchronize_session=False)
    )
    deleted += int(getattr(result, "rowcount", 0) or 0)
    if max_lines > 0:
        threshold = (
            await session.execute(
                select(ContainerLog.id).order_by(ContainerLog.id.desc()).offset(max_lines).limit(1)
            )
        ).scalar_one_or_none()
        if threshold is not None:
            result = await session.execute(
                delete(ContainerLog)
                .where(ContainerLog.id <= threshold)
                .execution_options(synchronize_session=False)
            )
            deleted += int(getattr(result, "rowcount", 0) or 0)
    await session.execute(
        delete(ContainerLogCursor)
        .where(ContainerLogCursor.updated_at < now - max_age)
        .execution_options(synchronize_session=False)
    )
    return deleted
