"""A node's connection state: connected, keepalive checks, disconnected, stale sweep.

Every write is conditional on ``connected_at`` being the caller's own connection time, so a
newer connection of the same node (another API process, a reconnect) is never overwritten by
an older one that is still winding down.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.events import Severity, record_event
from core.node_status import node_info
from core.nodes import grid_peers
from core.protocol import CloseCode
from models import Grid, Node
from models.db import Database


def _closed(code: int | None, reason: str) -> dict[str, Any]:
    return {"opened": False, "close_code": code, "close_reason": reason}


async def mark_connected(db: Database, node_pk: str, holder: str, now: datetime) -> bool:
    """Record this connection as the node's current one; False if a newer one already is."""
    async with db.session() as session:
        result = await session.execute(
            update(Node)
            .where(Node.id == node_pk, or_(Node.connected_at.is_(None), Node.connected_at < now))
            .values(
                connected=True,
                updated=False,
                connected_at=now,
                last_seen_at=now,
                connection_holder=holder,
                websocket_connection={"opened": True},
            )
            .returning(Node.grid_id, Node.name)
        )
        row = result.first()
        if row is None:
            return False
        record_event(
            session, row.grid_id, "node:connect", f"node {row.name} connected", node=row.name
        )
        await session.commit()
        return True


async def check_connection(
    db: Database, node_pk: str, connected_at: datetime, now: datetime | None = None
) -> int | None:
    """The close code this connection must end with, or None; with ``now``, also touch it.

    4040 when the node was removed, 4041 when another connection replaced this one, 4031 when
    the node was marked disconnected (token reset, stale sweep).
    """
    async with db.session() as session:
        node = (
            await session.execute(
                select(Node.connected, Node.connected_at).where(Node.id == node_pk)
            )
        ).first()
        if node is None:
            return int(CloseCode.NODE_REMOVED)
        if node.connected_at != connected_at:
            return int(CloseCode.CONNECTION_CONFLICT)
        if not node.connected:
            return int(CloseCode.CONNECTION_RESET)
        if now is not None:
            await session.execute(
                update(Node)
                .where(Node.id == node_pk, Node.connected_at == connected_at)
                .values(last_seen_at=now)
            )
            await session.commit()
        return None


async def mark_disconnected(
    db: Database,
    node_pk: str,
    connected_at: datetime,
    now: datetime,
    code: int | None,
    reason: str,
) -> bool:
    """Record the end of this connection if it is still the node's current one."""
    async with db.session() as session:
        node = (
            await session.execute(
                select(Node)
                .where(Node.id == node_pk, Node.connected_at == connected_at)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if node is None:
            return False
        was_connected = node.connected
        node.connected = False
        node.disconnected_at = now
        node.connection_holder = None
        node.websocket_connection = _closed(code, reason)
        if was_connected:
            record_event(
                session,
                node.grid_id,
                "node:disconnect",
                f"node {node.name} disconnected ({code}: {reason})"
                if code
                else f"node {node.name} disconnected",
                severity=Severity.WARN,
                node=node.name,
            )
        await session.commit()
        return True


async def mark_stale_offline(session: AsyncSession, now: datetime, cutoff: datetime) -> list[Node]:
    """Mark connected nodes unseen since ``cutoff`` disconnected; the caller commits."""
    stmt = (
        select(Node)
        .where(Node.connected.is_(True), Node.last_seen_at < cutoff)
        .with_for_update(skip_locked=True)
    )
    nodes = list((await session.execute(stmt)).scalars())
    for node in nodes:
        node.connected = False
        node.disconnected_at = now
        node.websocket_connection = _closed(None, "keepalive overdue")
        record_event(
            session,
            node.grid_id,
            "node:disconnect",
            f"node {node.name} is offline: no keepalive since {node.last_seen_at:%F %T}Z",
            severity=Severity.WARN,
            node=node.name,
        )
    return nodes


async def load_node_info(db: Database, node_pk: str) -> dict[str, Any] | None:
    """The ``/agent/node_info`` hash of a node, or None when it was removed."""
    async with db.session() as session:
        node = await session.get(Node, node_pk)
        if node is None:
            return None
        grid = await session.get(Grid, node.grid_id)
        assert grid is not None
        # Four columns per peer, not whole rows: every connect of a 250-node grid reads them
        # all, and full rows (five JSON columns each) made join storms CPU-bound here.
        return node_info(node, grid, await grid_peers(session, grid))
