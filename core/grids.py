"""Grids: Kontena's create/update/delete rules, membership-scoped listing and counts."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, cast

import msgspec
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import ScalarSelect

from core.auth import Principal
from core.errors import ErrorTree, Invalid
from core.events import record_event
from core.grid_names import random_grid_name
from core.tokens import digest, new_grid_token, object_id
from core.vault import Vault
from models import Grid, Node, Service, User, grid_users
from models.grids import DEFAULT_SUBNET, DEFAULT_SUPERNET

# Ruby's \w is ASCII-only, so Kontena rejected non-ASCII letters in names.
NAME_PATTERN = re.compile(r"\A(\w|-)+\Z", re.ASCII)
NAME_MIN, NAME_MAX = 3, 64  # the column is 64 wide; Kontena had no maximum
TOKEN_MAX = 256  # keeps the vault ciphertext within its column
NOT_ALLOWED: ErrorTree = {"user": "Operation not allowed"}


class Statsd(msgspec.Struct):
    """Where nodes export container statistics; a digit string port is accepted, as Kontena did."""

    server: str
    port: int | str


class GridStats(msgspec.Struct):
    """The ``stats`` hash; ``statsd: null`` turns exporting off."""

    statsd: Statsd | None = None


class GridLogs(msgspec.Struct):
    """Log shipping: ``fluentd`` with options, or ``none`` to turn it off."""

    forwarder: Literal["fluentd", "none"]
    opts: dict[str, str] = msgspec.field(default_factory=dict)


class GridCommon(msgspec.Struct):
    """Fields both create and update accept; ``None`` (or absent) leaves a field unchanged."""

    default_affinity: list[str] | None = None
    trusted_subnets: list[str] | None = None
    stats: GridStats | None = None
    logs: GridLogs | None = None


class GridCreate(GridCommon):
    """``POST /v1/grids``; a blank name gets a random one."""

    name: str | None = None
    initial_size: Annotated[int, msgspec.Meta(ge=1, le=7)] | None = None
    token: str | None = None
    subnet: str | None = None
    supernet: str | None = None


class GridUpdate(GridCommon):
    """``PUT /v1/grids/:name``: only the common fields; other keys are ignored."""


@dataclass(frozen=True)
class GridCounts:
    """What the grid JSON counts; nodes, services and containers arrive with their tables."""

    node_count: int = 0
    service_count: int = 0
    container_count: int = 0
    user_count: int = 0


def _is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def _common_errors(data: GridCommon) -> ErrorTree:
    errors: ErrorTree = {}
    for subnet in data.trusted_subnets or []:
        if not _is_network(subnet):
            errors["trusted_subnets"] = f"Invalid trusted_subnet {subnet}"
            break
    statsd = data.stats.statsd if data.stats else None
    if statsd is not None and isinstance(statsd.port, str):
        if statsd.port.strip().isdigit():
            statsd.port = int(statsd.port)
        else:
            errors["stats"] = {"statsd": {"port": "Port isn't an integer"}}
    if data.logs and data.logs.forwarder == "fluentd" and not data.logs.opts.get("fluentd-address"):
        errors["logs"] = "fluentd-address option must be given"
    return errors


def _apply_common(grid: Grid, data: GridCommon) -> None:
    if data.default_affinity is not None:
        grid.default_affinity = list(data.default_affinity)
    if data.trusted_subnets is not None:
        grid.trusted_subnets = list(data.trusted_subnets)
    if data.stats is not None:
        grid.stats = msgspec.to_builtins(data.stats)
    if data.logs is not None:
        # `forwarder: none` is how clients switch log shipping off.
        grid.logs = None if data.logs.forwarder == "none" else msgspec.to_builtins(data.logs)


def _name_errors(name: str) -> str | None:
    if len(name) < NAME_MIN:
        return "Name is too short"
    if len(name) > NAME_MAX:
        return "Name is too long"
    if not NAME_PATTERN.match(name):
        return "Name isn't in the right format"
    return None


async def _name_taken(session: AsyncSession, name: str) -> bool:
    found = await session.execute(select(Grid.id).where(Grid.name == name))
    return found.first() is not None


async def _unused_random_name(session: AsyncSession) -> str:
    for _ in range(20):
        name = random_grid_name()
        if not await _name_taken(session, name):
            return name
    return f"{random_grid_name()}-{object_id()[-6:]}"


async def create_grid(
    session: AsyncSession, vault: Vault, principal: Principal, data: GridCreate
) -> tuple[Grid, str]:
    """Create a grid (master_admin only); returns it with its plain join token."""
    if not principal.master_admin:
        raise Invalid(NOT_ALLOWED)
    errors = _common_errors(data)
    name = (data.name or "").strip()
    if name and (message := _name_errors(name)):
        errors["name"] = message
    for key, value in (("subnet", data.subnet), ("supernet", data.supernet)):
        if value is not None and not _is_network(value):
            errors[key] = f"Invalid {key} {value}"
    token = (data.token or "").strip() or new_grid_token()
    if len(token) > TOKEN_MAX:
        errors["token"] = "Token is too long"
    if errors:
        raise Invalid(errors)
    if not name:
        name = await _unused_random_name(session)
    elif await _name_taken(session, name):
        raise Invalid({"grid": f"Grid with name {name} already exists"})
    grid = await _insert_grid(session, vault, principal.user, name, token, data)
    return grid, token


async def _insert_grid(
    session: AsyncSession, vault: Vault, creator: User, name: str, token: str, data: GridCreate
) -> Grid:
    """Write a validated grid and make its creator a member."""
    token_hash = digest(token)
    if (await session.execute(select(Grid.id).where(Grid.token_hash == token_hash))).first():
        raise Invalid({"token": "Token is already in use"})
    grid = Grid(
        id=object_id(),
        name=name,
        token_hash=token_hash,
        token_encrypted=vault.encrypt(token, context=token_context(name)),
        initial_size=data.initial_size or 1,
        subnet=data.subnet or DEFAULT_SUBNET,
        supernet=data.supernet or DEFAULT_SUPERNET,
        default_affinity=[],
        trusted_subnets=[],
        stats={},
        logs=None,
    )
    _apply_common(grid, data)
    session.add(grid)
    await session.flush()
    await session.execute(grid_users.insert().values(grid_id=grid.id, user_id=creator.id))
    record_event(session, grid.id, "grid:create", f"grid {name} created by {creator.email}")
    return grid


async def create_default_grid(
    session: AsyncSession, vault: Vault, creator: User, name: str
) -> Grid:
    """The first grid of a fresh embedded master, with default settings."""
    if message := _name_errors(name):
        raise Invalid({"name": message})
    return await _insert_grid(session, vault, creator, name, new_grid_token(), GridCreate())


async def update_grid(
    session: AsyncSession, principal: Principal, grid: Grid, data: GridUpdate
) -> Grid:
    """Change the given common fields (master_admin or the grid's grid_admin)."""
    if not principal.grid_admin(grid):
        raise Invalid(NOT_ALLOWED)
    if errors := _common_errors(data):
        raise Invalid(errors)
    _apply_common(grid, data)
    await session.flush()
    record_event(
        session, grid.id, "grid:update", f"grid {grid.name} updated by {principal.user.email}"
    )
    return grid


async def deletion_blockers(session: AsyncSession, grid: Grid) -> list[str]:
    """Reasons the grid cannot be removed ("Grid has nodes", …); node/service issues add checks."""
    blockers = []
    # Services being removed (state "removing") still hold containers until the worker is done.
    if (
        await session.execute(select(Service.id).where(Service.grid_id == grid.id).limit(1))
    ).first():
        blockers.append("Grid has services")
    if (await session.execute(select(Node.id).where(Node.grid_id == grid.id).limit(1))).first():
        blockers.append("Grid has nodes")
    return blockers


async def delete_grid(session: AsyncSession, principal: Principal, grid: Grid) -> None:
    """Remove a grid (master_admin only); its memberships and event logs go with it."""
    if not principal.master_admin:
        raise Invalid(NOT_ALLOWED)
    if blockers := await deletion_blockers(session, grid):
        raise Invalid({"grid": blockers[0]})
    # A Core DELETE: the database cascades memberships and logs without loading them.
    await session.execute(delete(Grid).where(Grid.id == grid.id))


def _user_count() -> ScalarSelect[int]:
    """A correlated count of the grid's members, so a list needs no query per grid."""
    members = grid_users.alias("members")
    return select(func.count()).where(members.c.grid_id == Grid.id).scalar_subquery()


def _service_count() -> ScalarSelect[int]:
    """A correlated count of the grid's services (those being removed are gone for clients)."""
    svcs = Service.__table__.alias("grid_services")
    return (
        select(func.count())
        .where(svcs.c.grid_id == Grid.id, svcs.c.state != "removing")
        .scalar_subquery()
    )


def _node_count() -> ScalarSelect[int]:
    """A correlated count of the grid's nodes."""
    nodes = Node.__table__.alias("grid_nodes")
    return select(func.count()).where(nodes.c.grid_id == Grid.id).scalar_subquery()


class GridFields(Protocol):
    """The columns a grid's JSON is rendered from (an ORM row or a plain result row)."""

    name: str
    token_encrypted: str
    initial_size: int
    subnet: str
    supernet: str
    default_affinity: list[str]
    trusted_subnets: list[str]
    stats: dict[str, Any]
    logs: dict[str, Any] | None


async def list_grids(
    session: AsyncSession, principal: Principal
) -> list[tuple[GridFields, GridCounts]]:
    """All grids for a master_admin, the caller's own grids for everyone else, by name."""
    # Plain rows, not ORM objects: a list renders every grid and the ORM would cost 4x.
    stmt = select(
        Grid.__table__,
        _user_count().label("user_count"),
        _node_count().label("node_count"),
        _service_count().label("service_count"),
    ).order_by(Grid.name)
    if not principal.master_admin:
        stmt = stmt.join(grid_users, grid_users.c.grid_id == Grid.id).where(
            grid_users.c.user_id == principal.user.id
        )
    rows = await session.execute(stmt)
    return [
        (
            cast(GridFields, row),
            GridCounts(
                node_count=row.node_count,
                service_count=row.service_count,
                user_count=row.user_count,
            ),
        )
        for row in rows
    ]


async def grid_counts(session: AsyncSession, grid: Grid) -> GridCounts:
    """The counts shown in one grid's JSON."""
    row = (
        await session.execute(
            select(_user_count(), _node_count(), _service_count())
            .select_from(Grid)
            .where(Grid.id == grid.id)
        )
    ).one()
    return GridCounts(node_count=row[1] or 0, service_count=row[2] or 0, user_count=row[0] or 0)


def token_context(name: str) -> str:
    """The vault context that binds a grid token's ciphertext to its grid."""
    return f"grid:{name}"


def grid_token(vault: Vault, grid: GridFields) -> str:
    """The plain join token, decrypted for the grid JSON every member may read."""
    return vault.decrypt(grid.token_encrypted, context=token_context(grid.name))
