"""The agent's handshake: check its headers, find or create its node (reference §7.1).

The agent socket is not a request with a unit of work, so these functions run their own short
transactions on the database they are given.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import protocol
from core.events import record_event
from core.node_status import lowest_free_number
from core.protocol import CloseCode
from core.tokens import digest
from models import Grid, Node
from models.db import Database

# Kontena accepted an agent clock up to 5 s (+1 s of slack) behind and 1 s ahead.
CLOCK_SKEW_PAST = timedelta(seconds=6)
CLOCK_SKEW_FUTURE = timedelta(seconds=1)
# RFC 6455 "try again later": every node number of the grid is taken.
GRID_FULL = 1013
# Concurrent joins can race on the unique node number, name or node id; retry that often.
JOIN_ATTEMPTS = 10


class _Raced(Exception):
    """A concurrent join changed the rows this one read; resolve again."""


class JoinRejected(Exception):
    """The handshake failed; the socket is closed with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Handshake:
    """What the agent's headers say."""

    node_id: str
    name: str
    version: str
    labels: list[str]
    connected_at: str | None
    grid_token: str | None
    node_token: str | None


def read_handshake(headers: Mapping[str, str]) -> Handshake:
    """Parse the headers; rejects a missing node id (4000) or missing credentials (4004)."""
    node_id = (headers.get(protocol.HEADER_NODE_ID) or "").strip()
    if not node_id:
        raise JoinRejected(CloseCode.MISSING_NODE_ID, "Missing Kontena-Node-ID")
    grid_token = headers.get(protocol.HEADER_GRID_TOKEN) or None
    node_token = headers.get(protocol.HEADER_NODE_TOKEN) or None
    if grid_token is None and node_token is None:
        raise JoinRejected(CloseCode.MISSING_TOKEN, "Missing token")
    labels = [x.strip() for x in (headers.get(protocol.HEADER_LABELS) or "").split(",")]
    return Handshake(
        node_id=node_id[:255],
        name=(headers.get(protocol.HEADER_NODE_NAME) or "").strip()[:200],
        version=(headers.get(protocol.HEADER_VERSION) or "").strip(),
        labels=[x for x in labels if x],
        connected_at=headers.get(protocol.HEADER_CONNECTED_AT),
        grid_token=grid_token,
        node_token=node_token,
    )


async def join_node(db: Database, hs: Handshake, now: datetime) -> Node:
    """Authenticate the agent and return its node, creating or binding it when needed."""
    for _ in range(JOIN_ATTEMPTS):
        try:
            return await _join_once(db, hs, now)
        except (IntegrityError, _Raced):
            # A concurrent join took the number, name or id: look again a moment later.
            await asyncio.sleep(random.uniform(0, 0.05))
    raise JoinRejected(GRID_FULL, "node registration conflict, try again")


async def _join_once(db: Database, hs: Handshake, now: datetime) -> Node:
    async with db.session() as session:
        by_id = (
            await session.execute(select(Node).where(Node.node_id == hs.node_id))
        ).scalar_one_or_none()
        grid: Grid | None
        if hs.grid_token is not None:
            grid = (
                await session.execute(select(Grid).where(Grid.token_hash == digest(hs.grid_token)))
            ).scalar_one_or_none()
            if grid is None:
                raise JoinRejected(CloseCode.INVALID_GRID_TOKEN, "Invalid grid token")
            node = by_id
            if node is not None and node.grid_id != grid.id:
                raise JoinRejected(
                    CloseCode.NODE_TOKEN_CONFLICT, "Invalid node ID, it belongs to another grid"
                )
            if node is not None and node.token_hash is not None:
                raise JoinRejected(
                    CloseCode.NODE_NEEDS_NODE_TOKEN,
                    "Invalid grid token, node was created using a node token",
                )
        else:
            assert hs.node_token is not None
            node = (
                await session.execute(select(Node).where(Node.token_hash == digest(hs.node_token)))
            ).scalar_one_or_none()
            if node is None:
                raise JoinRejected(CloseCode.INVALID_NODE_TOKEN, "Invalid node token")
            if node.node_id is not None and node.node_id != hs.node_id:
                raise JoinRejected(
                    CloseCode.NODE_ID_CONFLICT,
                    "Invalid node ID, node token was used by another node",
                )
            if node.node_id is None and by_id is not None:
                raise JoinRejected(
                    CloseCode.NODE_TOKEN_CONFLICT, "Invalid node ID, used by another node"
                )
            grid = await session.get(Grid, node.grid_id)
            assert grid is not None
        _check_version(hs)
        skew = _clock_skew(hs, now)
        if skew is not None:
            if node is not None:
                node.websocket_connection = {
                    "opened": False,
                    "close_code": int(CloseCode.CLOCK_SKEW),
                    "close_reason": skew,
                }
                await session.commit()
            raise JoinRejected(CloseCode.CLOCK_SKEW, skew)
        if node is None:
            node = await _create_node(session, grid, hs)
        elif node.node_id is None:
            await _bind_node(session, node, hs)
        await session.commit()
        return node


def _check_version(hs: Handshake) -> None:
    if not protocol.version_compatible(protocol.PROTOCOL_VERSION, hs.version):
        raise JoinRejected(
            CloseCode.VERSION_MISMATCH,
            f"agent version {hs.version or 'unknown'} is not compatible with server version "
            f"{protocol.PROTOCOL_VERSION}",
        )


def _clock_skew(hs: Handshake, now: datetime) -> str | None:
    """A rejection reason when the agent's clock is off, else None (no header: not checked)."""
    if hs.connected_at is None:
        return None
    try:
        agent_time = protocol.parse_connected_at(hs.connected_at)
    except ValueError:
        return f"Invalid Kontena-Connected-At: {hs.connected_at[:64]}"
    if agent_time < now - CLOCK_SKEW_PAST or agent_time > now + CLOCK_SKEW_FUTURE:
        offset = (agent_time - now).total_seconds()
        return f"Agent clock offset {offset:+.2f}s exceeds the allowed skew"
    return None


async def _create_node(session: AsyncSession, grid: Grid, hs: Handshake) -> Node:
    # Joins of one grid take numbers one after the other (the grid row lock, on PostgreSQL);
    # SQLite serializes writers anyway, and a lost race is retried by join_node.
    await session.execute(select(Grid.id).where(Grid.id == grid.id).with_for_update())
    rows = (
        await session.execute(select(Node.node_number, Node.name).where(Node.grid_id == grid.id))
    ).all()
    taken = {number for number, _ in rows}
    number = lowest_free_number(taken)
    if number is None:
        raise JoinRejected(GRID_FULL, f"Grid {grid.name} has no free node number")
    name = hs.name or hs.node_id[:200]
    if name in {existing for _, existing in rows}:
        name = f"{name}-{number}"
    node = Node(
        grid_id=grid.id, node_id=hs.node_id, name=name, node_number=number, labels=hs.labels
    )
    session.add(node)
    await session.flush()
    record_event(session, grid.id, "node:create", f"node {name} joined", node=name)
    return node


async def _bind_node(session: AsyncSession, node: Node, hs: Handshake) -> None:
    """Bind the node token's node to this agent id, only if nobody bound it meanwhile."""
    labels = list(node.labels or [])
    labels += [label for label in hs.labels if label not in labels]
    bound = await session.execute(
        update(Node)
        .where(Node.id == node.id, Node.node_id.is_(None))
        .values(node_id=hs.node_id, labels=labels)
        .execution_options(synchronize_session=False)
    )
    if getattr(bound, "rowcount", 0) != 1:
        # Another connection bound it first: look again (same id → fine, else 4003).
        raise _Raced
    node.node_id = hs.node_id
    node.labels = labels
