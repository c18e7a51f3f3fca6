"""External registries: Kontena's validation, the derived ``host[:port]`` name, pull credentials."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ErrorTree, Invalid, NotFound
from core.vault import Vault
from core.vault_columns import registry_context
from models import Grid, Registry

URL_PATTERN = re.compile(r"\Ahttps?://\S+\Z")
DEFAULT_REGISTRY = "index.docker.io"  # where Docker pulls images whose name has no registry
FIELD_MAX = 255  # username/email column width
URL_MAX = 2048
TAKEN: ErrorTree = {"name": "is already taken"}


class RegistryCreate(msgspec.Struct):
    """``POST /v1/grids/:grid/external_registries``; rules checked with Kontena's words."""

    url: str | None = None
    username: str | None = None
    password: str | None = None
    email: str | None = None


def registry_name(url: str) -> str | None:
    """Kontena's name for a registry URL: the host, plus ``:port`` unless it is 80 or 443."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:  # an IPv6 literal keeps its brackets, as Ruby's URI#host does
        host = f"[{host}]"
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return host if port in (80, 443) else f"{host}:{port}"


def _required(tree: ErrorTree, key: str, value: str | None, limit: int) -> str | None:
    label = key.capitalize()
    if value is None:
        tree[key] = f"{label} is required"
    elif value == "":
        tree[key] = f"{label} can't be blank"
    elif len(value) > limit:
        tree[key] = f"{label} is too long"
    else:
        return value
    return None


def validate(data: RegistryCreate) -> tuple[str, str, str, str, str | None]:
    """``(name, url, username, password, email)`` or a 422 naming every bad field."""
    tree: ErrorTree = {}
    url = _required(tree, "url", data.url, URL_MAX)
    name = None
    if url is not None:
        name = registry_name(url) if URL_PATTERN.match(url) else None
        if name is None:
            tree["url"] = "Url isn't in the right format"
    username = _required(tree, "username", data.username, FIELD_MAX)
    password = _required(tree, "password", data.password, URL_MAX)
    email = data.email or None
    if email is not None and len(email) > FIELD_MAX:
        tree["email"] = "Email is too long"
    if tree or name is None or url is None or username is None or password is None:
        raise Invalid(tree)
    return name, url, username, password, email


async def list_registries(session: AsyncSession, grid: Grid) -> Sequence[Registry]:
    """The grid's registries by name."""
    query = select(Registry).where(Registry.grid_id == grid.id).order_by(Registry.name)
    return (await session.execute(query)).scalars().all()


async def find_registry(session: AsyncSession, grid: Grid, name: str) -> Registry | None:
    """The registry ``name`` of ``grid``, or None."""
    query = select(Registry).where(Registry.grid_id == grid.id, Registry.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def get_registry(session: AsyncSession, grid: Grid, name: str) -> Registry:
    """The registry ``name`` of ``grid``, or 404 ``Not found``."""
    registry = await find_registry(session, grid, name)
    if registry is None:
        raise NotFound()
    return registry


async def create_registry(
    session: AsyncSession, vault: Vault, grid: Grid, data: RegistryCreate
) -> Registry:
    """Add a registry; the password is encrypted; one registry per name and grid."""
    name, url, username, password, email = validate(data)
    if await find_registry(session, grid, name) is not None:
        raise Invalid(dict(TAKEN))
    registry = Registry(
        grid_id=grid.id,
        name=name,
        url=url,
        username=username,
        password_encrypted=vault.encrypt(password, context=registry_context(grid.name, name)),
        email=email,
    )
    session.add(registry)
    await session.flush()
    return registry


async def delete_registry(session: AsyncSession, registry: Registry) -> None:
    """Remove a registry."""
    await session.delete(registry)
    await session.flush()


def image_registry(image: str) -> str:
    """The registry an image is pulled from, named as registries are (Kontena's rule).

    The first path segment is a registry when it has a ``.`` or ``:`` (or is ``localhost``,
    as Docker reads it); otherwise the image comes from Docker Hub.
    """
    first, slash, _rest = image.partition("/")
    if slash and (first == "localhost" or "." in first or ":" in first):
        return first
    return DEFAULT_REGISTRY


async def registry_credentials_for_image(
    session: AsyncSession, vault: Vault, grid: Grid, image: str
) -> dict[str, str | None] | None:
    """Docker pull credentials for ``image`` from the grid's registries, or None."""
    name = image_registry(image)
    registry = await find_registry(session, grid, name)
    if registry is None and name != name.lower():
        registry = await find_registry(session, grid, name.lower())
    if registry is None:
        return None
    return {
        "username": registry.username,
        "password": vault.decrypt(
            registry.password_encrypted, context=registry_context(grid.name, registry.name)
        ),
        "serveraddress": registry.url,
        "email": registry.email,
    }
