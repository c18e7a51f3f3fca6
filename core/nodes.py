"""Nodes: Kontena's create/update/remove rules, node tokens, status and derived attributes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Principal
from core.errors import AccessDenied, ErrorTree, Invalid, NotFound
from core.events import record_event
from core.node_status import lowest_free_number
from core.runtime import Runtime
from core.stateful import follow_availability
from core.tokens import digest, new_grid_token, object_id
from core.vault import Vault
from models import Grid, Node

# Ruby's \w is ASCII-only; Kontena's node names matched /\A(\w|-)+\z/.
NAME_PATTERN = re.compile(r"\A(\w|-)+\Z", re.ASCII)
NAME_MAX = 255  # the column width; Kontena had no maximum
TOKEN_MIN, TOKEN_MAX = 16, 256  # HostNode's length validation
ACTIVE, DRAIN = "active", "drain"


class NodeCreate(msgspec.Struct):
    """``POST /v1/grids/:grid/nodes``: a node that will join with its own token."""

    name: str
    token: str | None = None
    labels: list[str] | None = None


class NodeUpdate(msgspec.Struct):
    """``PUT /v1/nodes/:grid/:node``: omitted fields are left unchanged."""

    labels: list[str] | None = None
    availability: Literal["active", "drain"] | None = None


class NodeTokenReset(msgspec.Struct):
    """``PUT …/token``: a given token or a generated one; optionally drop the connection."""

    token: str | None = None
    reset_connection: bool = False


class NodeTokenClear(msgspec.Struct):
    """``DELETE …/token``."""

    reset_connection: bool = False


@dataclass(frozen=True)
class Peer:
    """What another node contributes to a node's ``peer_ips``."""

    id: str
    labels: Sequence[str]
    private_ip: str | None
    public_ip: str | None


def token_context(grid_name: str, node_name: str) -> str:
    """The vault context binding a node token's ciphertext to its node (names never change)."""
    return f"node:{grid_name}/{node_name}"


def node_path(grid_name: str, node_name: str) -> str:
    """The node's id in the API: ``grid/name``."""
    return f"{grid_name}/{node_name}"


def _name_error(name: str) -> str | None:
    if not name:
        return "Name can't be blank"
    if len(name) > NAME_MAX:
        return "Name is too long"
    if not NAME_PATTERN.match(name):
        return "Name isn't in the right format"
    return None


def _token_error(token: str) -> str | None:
    if not token:
        return "Token can't be blank"
    if len(token) < TOKEN_MIN:
        return "Token is too short"
    if len(token) > TOKEN_MAX:
        return "Token is too long"
    return None


async def lock_grid(session: AsyncSession, grid: Grid) -> None:
    """Serialize node creation in a grid (names and numbers are allocated under this lock)."""
    # FOR UPDATE on PostgreSQL; SQLite has one writer anyway and ignores the clause.
    await session.execute(select(Grid.id).where(Grid.id == grid.id).with_for_update())


async def allocate_node_number(session: AsyncSession, grid_id: str) -> int:
    """The lowest free node number 1..254; call under :func:`lock_grid`."""
    used = set(await session.scalars(select(Node.node_number).where(Node.grid_id == grid_id)))
    number = lowest_free_number(used)
    if number is not None:
        return number
    raise Invalid({"node_number": "Grid has no free node numbers"})


async def _name_taken(session: AsyncSession, grid_id: str, name: str) -> bool:
    found = await session.execute(select(Node.id).where(Node.grid_id == grid_id, Node.name == name))
    return found.first() is not None


async def _token_taken(session: AsyncSession, token: str, *, besides: str | None = None) -> bool:
    stmt = select(Node.id).where(Node.token_hash == digest(token))
    if besides is not None:
        stmt = stmt.where(Node.id != besides)
    return (await session.execute(stmt)).first() is not None


def _store_token(vault: Vault, grid: Grid, node: Node, token: str) -> None:
    """Keep the hash for the agent's join and a vault copy because the API shows it again."""
    node.token_hash = digest(token)
    node.token_encrypted = vault.encrypt(token, context=token_context(grid.name, node.name))


async def create_node(
    session: AsyncSession, vault: Vault, principal: Principal, grid: Grid, data: NodeCreate
) -> tuple[Node, str]:
    """Create a not-yet-joined node with a node token (grid_admin+); returns it and the token."""
    if not principal.grid_admin(grid):
        raise AccessDenied()
    errors: ErrorTree = {}
    if message := _name_error(data.name):
        errors["name"] = message
    if data.token is not None and (message := _token_error(data.token)):
        errors["token"] = message
    if errors:
        raise Invalid(errors)
    await lock_grid(session, grid)
    if await _name_taken(session, grid.id, data.name):
        raise Invalid({"name": "Name is already taken"})
    token = data.token or new_grid_token()
    if await _token_taken(session, token):
        raise Invalid({"token": "Node with token already exists"})
    node = Node(
        id=object_id(),
        grid_id=grid.id,
        name=data.name,
        node_number=await allocate_node_number(session, grid.id),
        labels=list(data.labels or []),
        availability=ACTIVE,
        network_drivers=[],
        volume_drivers=[],
        websocket_connection={},
        latest_stats={},
    )
    _store_token(vault, grid, node, token)
    session.add(node)
    await session.flush()
    record_event(
        session,
        grid.id,
        "node:create",
        f"node {data.name} created by {principal.user.email}",
        node=data.name,
    )
    return node, token


async def list_nodes(session: AsyncSession, grid: Grid) -> list[Node]:
    """The grid's nodes, by name."""
    rows = await session.scalars(select(Node).where(Node.grid_id == grid.id).order_by(Node.name))
    return list(rows)


async def grid_peers(session: AsyncSession, grid: Grid) -> list[Peer]:
    """What ``peer_ips`` needs of every node in the grid, in one query."""
    rows = await session.execute(
        select(Node.id, Node.labels, Node.private_ip, Node.public_ip).where(Node.grid_id == grid.id)
    )
    return [Peer(r.id, r.labels or [], r.private_ip, r.public_ip) for r in rows]


async def find_node(session: AsyncSession, grid: Grid, ref: str) -> Node:
    """The node named ``ref``, or with agent id ``ref`` when it contains ``:``; else 404."""
    column = Node.node_id if ":" in ref else Node.name
    node = (
        await session.execute(select(Node).where(Node.grid_id == grid.id, column == ref))
    ).scalar_one_or_none()
    if node is None:
        raise NotFound()
    return node


async def update_node(
    session: AsyncSession, principal: Principal, grid: Grid, node: Node, data: NodeUpdate
) -> Node:
    """Replace labels and/or set availability (any member)."""
    if data.labels is not None:
        node.labels = list(data.labels)
    if data.availability is not None and data.availability != node.availability:
        node.availability = data.availability
        # Stateful instances stop in place on drain, start again on active (reference §3.9);
        # stateless ones are moved by the rescheduling tick.
        await follow_availability(session, node, data.availability)
        record_event(
            session,
            grid.id,
            f"node:{data.availability}",
            f"node {node.name} availability set to {data.availability} by {principal.user.email}",
            node=node.name,
        )
    await session.flush()
    record_event(
        session,
        grid.id,
        "node:update",
        f"node {node.name} updated by {principal.user.email}",
        node=node.name,
    )
    return node


async def delete_node(session: AsyncSession, principal: Principal, grid: Grid, node: Node) -> None:
    """Unregister the node; its stats go with it (the agent's socket is closed with 4040)."""
    # A Core DELETE: the database cascades the node's stats without loading them.
    await session.execute(delete(Node).where(Node.id == node.id))
    record_event(
        session,
        grid.id,
        "node:remove",
        f"node {node.name} removed by {principal.user.email}",
        node=node.name,
    )


def require_token_admin(principal: Principal, grid: Grid) -> None:
    """Node tokens are for grid_admin+ only; others get 403 ``Access denied``."""
    if not principal.grid_admin(grid):
        raise AccessDenied()


def node_token(vault: Vault, grid: Grid, node: Node) -> str:
    """The node's plain token, or 404 when it has none."""
    if not node.token_encrypted:
        raise NotFound("Host node does not have a node token")
    return vault.decrypt(node.token_encrypted, context=token_context(grid.name, node.name))


def _drop_connection(node: Node) -> None:
    # The API process holding the socket sees connected=false on its re-check and closes it
    # with 4031; the agent then has to join again with whatever token is valid now.
    node.connected = False


async def reset_token(
    session: AsyncSession,
    vault: Vault,
    principal: Principal,
    grid: Grid,
    node: Node,
    data: NodeTokenReset,
) -> str:
    """Give the node a new token (the given one or a generated one); returns it."""
    require_token_admin(principal, grid)
    if data.token is not None and (message := _token_error(data.token)):
        raise Invalid({"token": message})
    token = data.token or new_grid_token()
    if await _token_taken(session, token, besides=node.id):
        raise Invalid({"token": "Node with token already exists"})
    _store_token(vault, grid, node, token)
    if data.reset_connection:
        _drop_connection(node)
    await session.flush()
    record_event(
        session,
        grid.id,
        "node:token_reset",
        f"node {node.name} token reset by {principal.user.email}",
        node=node.name,
    )
    return token


async def clear_token(
    session: AsyncSession, principal: Principal, grid: Grid, node: Node, data: NodeTokenClear
) -> None:
    """Remove the node token: the node can then only join with the grid token."""
    require_token_admin(principal, grid)
    node.token_hash = None
    node.token_encrypted = None
    if data.reset_connection:
        _drop_connection(node)
    await session.flush()
    record_event(
        session,
        grid.id,
        "node:token_clear",
        f"node {node.name} token cleared by {principal.user.email}",
        node=node.name,
    )


async def request_recheck(runtime: Runtime, node: Node) -> None:
    """Make the API process holding the node's socket re-check it (4031 reset, 4040 removed).

    Call after the change is committed, so the holder sees it; a holder that misses the nudge
    still notices on its next keepalive check, as Kontena did.
    """
    await runtime.node_rpc.control(node.id, "recheck")
