"""Kontena's log query rules (limit, from, since, follow), shared by event and container logs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from core.errors import Invalid
from models import EventLog

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
FOLLOW_CHUNK = 300  # rows per poll while following, as Kontena did
POLL_INTERVAL = 0.5  # seconds between polls and between keep-alive spaces
KEEP_ALIVE = b" "
NULL_STACK = "null"  # Kontena's name for the stack of stack-less services
_LEADING_INT = re.compile(r"\s*[+-]?\d+")


@dataclass(frozen=True)
class LogQuery:
    """The paging parameters of a log request, already normalised."""

    limit: int = DEFAULT_LIMIT
    from_id: int | None = None
    since: datetime | None = None
    follow: bool = False


def parse_limit(raw: str | None) -> int:
    """Missing, non-numeric or ≤0 → 100; above 10000 → 10000 (read like Ruby's ``to_i``)."""
    match = _LEADING_INT.match(raw or "")
    value = int(match.group()) if match else 0
    if value <= 0:
        return DEFAULT_LIMIT
    return min(value, MAX_LIMIT)


def parse_since(raw: str | None) -> datetime | None:
    """An ISO 8601 timestamp (naive means UTC); anything unparsable means no filter."""
    if not raw or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_from(raw: str | None) -> int | None:
    """The ``from`` cursor: the id of the last entry a client saw."""
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise Invalid({"from": "From isn't an integer"}) from None


def parse_log_query(params: Mapping[str, str]) -> LogQuery:
    """Read ``limit``, ``from``, ``since`` and ``follow`` from query parameters."""
    return LogQuery(
        limit=parse_limit(params.get("limit")),
        from_id=parse_from(params.get("from")),
        since=parse_since(params.get("since")),
        follow=bool(params.get("follow")),
    )


def split_list(raw: str | None) -> list[str]:
    """A comma-separated filter value as a list of non-empty names."""
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


@dataclass(frozen=True)
class LogTable:
    """The id and timestamp columns a log query pages on."""

    id: InstrumentedAttribute[int]
    created_at: InstrumentedAttribute[datetime]


def _newest_first_filter(base: Select[T], table: LogTable, query: LogQuery) -> Select[T]:
    # `since` applies only without a cursor: the cursor already says where to start.
    if query.from_id is None and query.since is not None:
        return base.where(table.created_at > query.since)
    return base


async def fetch_logs(
    session: AsyncSession, base: Select[T], table: LogTable, query: LogQuery
) -> list[T]:
    """One page: after ``from`` ascending, else the newest ``limit`` returned oldest first."""
    if query.from_id is not None:
        stmt = base.where(table.id > query.from_id).order_by(table.id.asc()).limit(query.limit)
        return list((await session.execute(stmt)).scalars())
    stmt = _newest_first_filter(base, table, query).order_by(table.id.desc()).limit(query.limit)
    rows = list((await session.execute(stmt)).scalars())
    rows.reverse()
    return rows


async def fetch_after(
    session: AsyncSession,
    base: Select[T],
    table: LogTable,
    query: LogQuery,
    last_id: int,
    chunk: int = FOLLOW_CHUNK,
) -> list[T]:
    """Entries newer than ``last_id``, oldest first, at most ``chunk`` of them."""
    stmt = _newest_first_filter(base, table, query).where(table.id > last_id)
    stmt = stmt.order_by(table.id.asc()).limit(chunk)
    return list((await session.execute(stmt)).scalars())


async def follow_logs(
    open_session: Callable[[], AsyncSession],
    base: Select[T],
    table: LogTable,
    query: LogQuery,
    render: Callable[[T], bytes],
    entry_id: Callable[[T], int],
    *,
    poll_interval: float = POLL_INTERVAL,
) -> AsyncIterator[bytes]:
    """The first page, then every newer entry forever; a space while idle keeps the line open.

    Each poll uses its own short session, so a follower holds no database connection while
    it waits; the caller stops the stream by closing the iterator (client disconnect).
    """

    async def poll(last_id: int | None) -> list[T]:
        async with open_session() as session:
            if last_id is None:
                return await fetch_logs(session, base, table, query)
            return await fetch_after(session, base, table, query, last_id)

    async def shielded(last_id: int | None) -> list[T]:
        # A disconnect must not cancel a query half way: let it finish and return the
        # connection to the pool cleanly, then stop.
        return await asyncio.shield(asyncio.ensure_future(poll(last_id)))

    rows = await shielded(None)
    last_id = query.from_id or 0
    while True:
        for row in rows:
            yield render(row)
            last_id = max(last_id, entry_id(row))
        if len(rows) < FOLLOW_CHUNK:
            if not rows:
                yield KEEP_ALIVE
            await asyncio.sleep(poll_interval)
        rows = await shielded(last_id)


# --- event logs ------------------------------------------------------------------------

EVENT_LOG_TABLE = LogTable(id=EventLog.id, created_at=EventLog.created_at)


def event_log_select(
    grid_id: str,
    *,
    nodes: Sequence[str] = (),
    stacks: Sequence[str] = (),
    services: Sequence[str] = (),
) -> Select[EventLog]:
    """A grid's event logs, narrowed by node names, stack names and ``stack/service`` names.

    Rows keep names, not ids: ``stack`` is the stack name (``null`` for stack-less services),
    ``service`` the service name inside it. A bare service name means the ``null`` stack.
    """
    stmt = select(EventLog).where(EventLog.grid_id == grid_id)
    if nodes:
        stmt = stmt.where(EventLog.node.in_(list(nodes)))
    if stacks:
        stmt = stmt.where(EventLog.stack.in_(list(stacks)))
    if services:
        clauses: list[ColumnElement[bool]] = []
        for path in services:
            stack, _, service = path.rpartition("/")
            clauses.append(
                and_(EventLog.stack == (stack or NULL_STACK), EventLog.service == service)
            )
        stmt = stmt.where(or_(*clauses))
    return stmt


def event_relationships(grid_name: str, entry: EventLog) -> list[dict[str, Any]]:
    """The ``relationships`` of an event: ids are Kontena paths of what the event concerns."""
    related = [{"id": grid_name, "type": "grid"}]
    stack = entry.stack or (NULL_STACK if entry.service else None)
    if stack:
        related.append({"id": f"{grid_name}/{stack}", "type": "stack"})
    if entry.service:
        related.append({"id": f"{grid_name}/{stack}/{entry.service}", "type": "service"})
    if entry.volume:
        related.append({"id": f"{grid_name}/{entry.volume}", "type": "volume"})
    if entry.node:
        related.append({"id": f"{grid_name}/{entry.node}", "type": "node"})
    return related
