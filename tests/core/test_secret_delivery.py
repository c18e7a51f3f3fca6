"""What a service's instances will receive: secret values and registry pull credentials."""

from __future__ import annotations

import pytest

from core import registries, secrets
from core.registries import (
    RegistryCreate,
    image_registry,
    registry_credentials_for_image,
    registry_name,
)
from core.secrets import MissingSecretError, SecretCreate, resolve_service_secrets
from core.vault import Vault
from models import Grid
from models.db import Database
from tests.fixtures.grid_rows import create_grid_row


async def _grid_with(db: Database, vault: Vault, name: str, values: dict[str, str]) -> Grid:
    grid = await create_grid_row(db, vault, name)
    async with db.session() as session:
        for key, value in values.items():
            await secrets.create_secret(session, vault, grid, SecretCreate(name=key, value=value))
        await session.commit()
    return grid


async def test_secrets_resolve_to_name_type_value_in_service_order(
    db: Database, vault: Vault
) -> None:
    grid = await _grid_with(db, vault, "main", {"DB_PASS": "pw", "CERT_A": "a", "CERT_B": "b"})
    await _grid_with(db, vault, "other", {"ONLY_THERE": "x"})
    refs = [
        {"secret": "DB_PASS", "name": "PASSWORD", "type": "env"},
        {"secret": "CERT_B", "name": "SSL_CERTS", "type": "env"},
        {"secret": "CERT_A", "name": "SSL_CERTS"},  # type defaults to env
    ]
    async with db.session() as session:
        resolved = await resolve_service_secrets(session, vault, grid, refs)
        assert await resolve_service_secrets(session, vault, grid, []) == []
    assert resolved == [
        {"name": "PASSWORD", "type": "env", "value": "pw"},
        {"name": "SSL_CERTS", "type": "env", "value": "b"},
        {"name": "SSL_CERTS", "type": "env", "value": "a"},
    ]


async def test_a_missing_secret_fails_with_an_error_naming_it(db: Database, vault: Vault) -> None:
    grid = await _grid_with(db, vault, "main", {"PRESENT": "v"})
    await _grid_with(db, vault, "other", {"ONLY_THERE": "secret-value"})
    refs = [
        {"secret": "PRESENT", "name": "A", "type": "env"},
        {"secret": "ONLY_THERE", "name": "B", "type": "env"},
        {"secret": "NOPE", "name": "C", "type": "env"},
    ]
    async with db.session() as session:
        with pytest.raises(MissingSecretError) as caught:
            await resolve_service_secrets(session, vault, grid, refs)
    assert caught.value.names == ["NOPE", "ONLY_THERE"]
    assert caught.value.grid == "main"
    assert str(caught.value) == "secrets NOPE, ONLY_THERE not found in grid main"
    async with db.session() as session:
        with pytest.raises(MissingSecretError, match=r"^secret NOPE not found in grid main$"):
            await resolve_service_secrets(session, vault, grid, refs[2:])


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://registry.example.com/", "registry.example.com"),
        ("http://registry.example.com", "registry.example.com"),
        ("https://registry.example.com:443/v2/", "registry.example.com"),
        ("http://registry.example.com:443", "registry.example.com"),
        ("https://registry.example.com:5000", "registry.example.com:5000"),
        ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
        ("https://[::1]:5000", "[::1]:5000"),
        ("https://user@host.example.com:8443/x", "host.example.com:8443"),
        ("https://host:notaport", None),
        ("https:///path", None),
    ],
)
def test_registry_name_is_host_plus_port_unless_80_or_443(url: str, name: str | None) -> None:
    assert registry_name(url) == name


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("redis", "index.docker.io"),
        ("redis:7", "index.docker.io"),
        ("library/redis:7", "index.docker.io"),
        ("kontena/agent:1.5", "index.docker.io"),
        ("registry.example.com/team/app:1", "registry.example.com"),
        ("127.0.0.1:5000/busybox", "127.0.0.1:5000"),
        ("localhost:5000/busybox:latest", "localhost:5000"),
        ("localhost/busybox", "localhost"),
    ],
)
def test_image_registry_follows_kontenas_rule(image: str, registry: str) -> None:
    assert image_registry(image) == registry


async def test_credentials_are_given_for_images_of_a_known_registry(
    db: Database, vault: Vault
) -> None:
    grid = await create_grid_row(db, vault, "main")
    other = await create_grid_row(db, vault, "other")
    async with db.session() as session:
        for url, user in (("http://127.0.0.1:5000", "bot"), ("https://index.docker.io/", "hub")):
            await registries.create_registry(
                session,
                vault,
                grid,
                RegistryCreate(url=url, username=user, password=f"{user}-pw", email=None),
            )
        await registries.create_registry(
            session,
            vault,
            other,
            RegistryCreate(url="https://reg.example.com", username="o", password="o-pw"),
        )
        await session.commit()
    async with db.session() as session:
        local = await registry_credentials_for_image(
            session, vault, grid, "127.0.0.1:5000/busybox:latest"
        )
        hub = await registry_credentials_for_image(session, vault, grid, "redis:7")
        foreign = await registry_credentials_for_image(session, vault, grid, "reg.example.com/app")
        unknown = await registry_credentials_for_image(session, vault, grid, "quay.io/x/y")
    assert local == {
        "username": "bot",
        "password": "bot-pw",
        "serveraddress": "http://127.0.0.1:5000",
        "email": None,
    }
    assert hub is not None and hub["password"] == "hub-pw"
    assert foreign is None  # another grid's registry is never used
    assert unknown is None
