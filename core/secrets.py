"""Grid secrets: Kontena's name rules, vault-encrypted values, consumers and delivery.

Services arrive with [F3]; until then nothing consumes a secret. They plug in through two
hooks: :data:`CONSUMER_FINDERS` (which services use which secret, for the JSON and the delete
check) and :data:`CHANGE_HOOKS` (bump those services' revision when a value changes).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorTree, Invalid, NotFound
from core.vault import Vault
from core.vault_columns import secret_context
from models import Grid, GridSecret

# Ruby's \w is ASCII-only; the look-ahead forbids a leading "-" as Kontena did.
NAME_PATTERN = re.compile(r"\A(?!-)(\w|-)+\Z", re.ASCII)
NAME_MAX = 255  # the column width; Kontena had no maximum
TAKEN: ErrorTree = {"name": "is already taken"}  # Mongoid's message, passed through verbatim


class SecretCreate(msgspec.Struct):
    """``POST /v1/grids/:grid/secrets``; presence and format are checked with Kontena's words."""

    name: str | None = None
    value: str | None = None


class SecretUpdate(msgspec.Struct):
    """``PUT /v1/secrets/:grid/:name``; ``name`` is read only when ``upsert`` creates."""

    value: str | None = None
    name: str | None = None
    upsert: bool = False


@dataclass(frozen=True)
class ServiceRef:
    """A service that consumes a secret, as the secret JSON lists it."""

    id: str
    name: str


# (session, grid) → {secret name: services using it}; filled by the services issue.
ConsumerFinder = Callable[[AsyncSession, Grid], Awaitable[Mapping[str, Sequence[ServiceRef]]]]
CONSUMER_FINDERS: list[ConsumerFinder] = []
# (session, grid, secret name) → None; called after a secret is created or its value changed.
ChangeHook = Callable[[AsyncSession, Grid, str], Awaitable[None]]
CHANGE_HOOKS: list[ChangeHook] = []


class MissingSecretError(Exception):
    """A service refers to secrets its grid does not hold; the message names them."""

    def __init__(self, grid: str, names: Sequence[str]) -> None:
        self.grid = grid
        self.names = list(names)
        label = "secret" if len(names) == 1 else "secrets"
        super().__init__(f"{label} {', '.join(names)} not found in grid {grid}")


def validate_name(name: str | None, tree: ErrorTree) -> str | None:
    """``name`` if it follows Kontena's rules, else None with the message put in ``tree``."""
    if name is None:
        tree["name"] = "Name is required"
    elif name == "":
        tree["name"] = "Name can't be blank"
    elif len(name) > NAME_MAX:
        tree["name"] = "Name is too long"
    elif not NAME_PATTERN.match(name):
        tree["name"] = "Name isn't in the right format"
    else:
        return name
    return None


def validate_value(value: str | None, tree: ErrorTree) -> str | None:
    """A non-empty string value, else None with the message in ``tree`` (never the value)."""
    if value is None:
        tree["value"] = "Value is required"
    elif value == "":
        tree["value"] = "Value can't be blank"
    else:
        return value
    return None


def secret_path(grid: Grid, secret: GridSecret) -> str:
    """The public id ``grid/NAME``."""
    return f"{grid.name}/{secret.name}"


async def consumers(session: AsyncSession, grid: Grid) -> dict[str, list[ServiceRef]]:
    """Which services use each secret of ``grid`` (empty until services exist)."""
    found: dict[str, list[ServiceRef]] = {}
    for finder in CONSUMER_FINDERS:
        for name, refs in (await finder(session, grid)).items():
            found.setdefault(name, []).extend(refs)
    return found


async def list_secrets(session: AsyncSession, grid: Grid) -> Sequence[GridSecret]:
    """The grid's secrets by name."""
    query = select(GridSecret).where(GridSecret.grid_id == grid.id).order_by(GridSecret.name)
    return (await session.execute(query)).scalars().all()


async def find_secret(session: AsyncSession, grid: Grid, name: str) -> GridSecret | None:
    """The secret ``name`` of ``grid``, or None."""
    query = select(GridSecret).where(GridSecret.grid_id == grid.id, GridSecret.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def get_secret(session: AsyncSession, grid: Grid, name: str) -> GridSecret:
    """The secret ``name`` of ``grid``, or 404 ``Not found``."""
    secret = await find_secret(session, grid, name)
    if secret is None:
        raise NotFound()
    return secret


def reveal(vault: Vault, grid: Grid, secret: GridSecret) -> str:
    """The plain value of ``secret``."""
    return vault.decrypt(secret.value_encrypted, context=secret_context(grid.name, secret.name))


async def create_secret(
    session: AsyncSession, vault: Vault, grid: Grid, data: SecretCreate | SecretUpdate
) -> tuple[GridSecret, str]:
    """Create a secret from ``{name, value}``; 422 on bad input or a taken name."""
    tree: ErrorTree = {}
    name = validate_name(data.name, tree)
    value = validate_value(data.value, tree)
    if tree or name is None or value is None:
        raise Invalid(tree)
    if await find_secret(session, grid, name) is not None:
        raise Invalid(dict(TAKEN))
    secret = GridSecret(
        grid_id=grid.id,
        name=name,
        value_encrypted=vault.encrypt(value, context=secret_context(grid.name, name)),
    )
    session.add(secret)
    await session.flush()
    await _changed(session, grid, name)
    return secret, value


async def update_secret(
    session: AsyncSession, vault: Vault, grid: Grid, secret: GridSecret, data: SecretUpdate
) -> str:
    """Set a new value; the same value changes nothing (no new ciphertext, no revision bump)."""
    tree: ErrorTree = {}
    value = validate_value(data.value, tree)
    if tree or value is None:
        raise Invalid(tree)
    if reveal(vault, grid, secret) != value:
        secret.value_encrypted = vault.encrypt(
            value, context=secret_context(grid.name, secret.name)
        )
        await session.flush()
        await _changed(session, grid, secret.name)
    return value


async def delete_secret(session: AsyncSession, grid: Grid, secret: GridSecret) -> None:
    """Remove a secret no service uses; otherwise 422 naming the services."""
    users = (await consumers(session, grid)).get(secret.name, [])
    if users:
        names = ", ".join(ref.id for ref in users)
        raise Invalid({"secret": f"Secret {secret.name} still in use in services: {names}"})
    await session.delete(secret)
    await session.flush()


async def _changed(session: AsyncSession, grid: Grid, name: str) -> None:
    for hook in CHANGE_HOOKS:
        await hook(session, grid, name)


async def resolve_service_secrets(
    session: AsyncSession, vault: Vault, grid: Grid, refs: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """A service's ``secrets`` ({secret, name, type}) as ``{name, type, value}`` for the agent.

    Order is kept (the agent joins several secrets mapped to one env name with newlines).
    Raises :class:`MissingSecretError` naming every secret the grid does not hold.
    """
    wanted = [str(ref["secret"]) for ref in refs]
    rows = {
        row.name: row
        for row in (
            await session.execute(
                select(GridSecret).where(
                    GridSecret.grid_id == grid.id, GridSecret.name.in_(set(wanted))
                )
            )
        ).scalars()
    }
    missing = sorted({name for name in wanted if name not in rows})
    if missing:
        raise MissingSecretError(grid.name, missing)
    return [
        {
            "name": str(ref["name"]),
            "type": str(ref.get("type") or "env"),
            "value": reveal(vault, grid, rows[str(ref["secret"])]),
        }
        for ref in refs
    ]
