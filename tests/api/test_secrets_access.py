"""Who may call each secrets and registries endpoint (§1): every endpoint, every kind of caller."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select

from core import registries, secrets
from core.registries import RegistryCreate
from core.secrets import SecretCreate
from core.vault import Vault
from models import Grid, GridSecret, Registry
from models.db import Database
from tests.fixtures.callers import KINDS, MASTER_ADMIN, REFUSED, caller_headers, invalid_token_body
from tests.fixtures.grid_rows import create_grid_row

DENIED = {"error": "Access denied"}
NOT_FOUND = {"error": "Not found"}
REGISTRY = "reg.example.com"

# (method, path, body, status for an allowed caller): every member may use all of them.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("GET", "/v1/grids/{grid}/secrets", None, 200),
    ("POST", "/v1/grids/{grid}/secrets", {"name": "NEW", "value": "v"}, 201),
    ("PUT", "/v1/grids/{grid}/secrets/SECRET", {"value": "changed"}, 200),
    ("GET", "/v1/secrets/{grid}/SECRET", None, 200),
    ("PUT", "/v1/secrets/{grid}/SECRET", {"value": "changed"}, 200),
    ("DELETE", "/v1/secrets/{grid}/SECRET", None, 200),
    ("GET", "/v1/grids/{grid}/external_registries", None, 200),
    (
        "POST",
        "/v1/grids/{grid}/external_registries",
        {"url": "https://new.example.com", "username": "u", "password": "p"},
        201,
    ),
    ("GET", f"/v1/external_registries/{{grid}}/{REGISTRY}", None, 200),
    ("DELETE", f"/v1/external_registries/{{grid}}/{REGISTRY}", None, 200),
    ("DELETE", f"/v1/grids/{{grid}}/external_registries/{REGISTRY}", None, 200),
]
IDS = [f"{method} {path}" for method, path, _b, _s in ENDPOINTS]


async def _seed(db: Database, vault: Vault) -> None:
    """Grid ``main`` with secret ``SECRET`` and registry ``reg.example.com``."""
    grid = await create_grid_row(db, vault, "main")
    async with db.session() as session:
        await secrets.create_secret(
            session, vault, grid, SecretCreate(name="SECRET", value="original")
        )
        await registries.create_registry(
            session,
            vault,
            grid,
            RegistryCreate(url=f"https://{REGISTRY}", username="bot", password="pw"),
        )
        await session.commit()


async def _reset(db: Database, vault: Vault) -> None:
    """Start each caller from the same grid: drop it (with its secrets and registries), re-seed."""
    async with db.session() as session:
        await session.execute(delete(Grid))
        await session.commit()
    await _seed(db, vault)


async def _state(db: Database, vault: Vault) -> tuple[int, int, str | None]:
    """Secret count, registry count and the value of ``SECRET``: unchanged after a refusal."""
    async with db.session() as session:
        n_secrets = (await session.execute(select(func.count(GridSecret.id)))).scalar_one()
        n_registries = (await session.execute(select(func.count(Registry.id)))).scalar_one()
        row = (
            await session.execute(select(GridSecret).where(GridSecret.name == "SECRET"))
        ).scalar_one_or_none()
        value = vault.decrypt(row.value_encrypted, context="secret:main/SECRET") if row else None
    return n_secrets, n_registries, value


async def _call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body", "ok"), ENDPOINTS, ids=IDS)
async def test_only_members_reach_grid_secrets_and_registries(
    client: httpx.AsyncClient,
    db: Database,
    vault: Vault,
    make_user: Any,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    ok: int,
) -> None:
    for kind in KINDS:
        await _reset(db, vault)
        headers = await caller_headers(kind, make_user, db, grid="main")
        before = await _state(db, vault)
        response = await _call(client, method, path.format(grid="main"), body, headers)
        if kind in REFUSED:
            expected: tuple[int, Any] = (403, invalid_token_body(kind))
        elif kind == "non-admin user":  # authenticated, not a member of `main`
            expected = (403, DENIED)
        else:
            assert kind in ("grid member", MASTER_ADMIN)
            assert response.status_code == ok, (kind, response.text)
            continue
        assert (response.status_code, response.json()) == expected, kind
        assert await _state(db, vault) == before, kind


async def test_an_unknown_grid_is_404_even_for_outsiders(
    client: httpx.AsyncClient, db: Database, vault: Vault, make_user: Any
) -> None:
    await _seed(db, vault)
    callers = [
        await caller_headers(kind, make_user, db) for kind in ("non-admin user", MASTER_ADMIN)
    ]
    for method, path, body, _ok in ENDPOINTS:
        for headers in callers:
            response = await _call(client, method, path.format(grid="missing"), body, headers)
            assert (response.status_code, response.json()) == (404, NOT_FOUND), path


UNKNOWN_NAMES = [
    ("GET", "/v1/secrets/main/UNKNOWN"),
    ("PUT", "/v1/secrets/main/UNKNOWN"),
    ("PUT", "/v1/grids/main/secrets/UNKNOWN"),
    ("DELETE", "/v1/secrets/main/UNKNOWN"),
    ("GET", "/v1/external_registries/main/unknown.example.com"),
    ("DELETE", "/v1/external_registries/main/unknown.example.com"),
    ("DELETE", "/v1/grids/main/external_registries/unknown.example.com"),
]


async def test_an_unknown_name_is_404_for_members_and_403_for_outsiders(
    client: httpx.AsyncClient, db: Database, vault: Vault, make_user: Any
) -> None:
    await _seed(db, vault)
    member = await caller_headers("grid member", make_user, db, grid="main")
    outsider = await caller_headers("non-admin user", make_user, db)
    for method, path in UNKNOWN_NAMES:
        body = {"value": "v"} if method == "PUT" else None
        response = await _call(client, method, path, body, member)
        assert (response.status_code, response.json()) == (404, NOT_FOUND), path
        # Outsiders learn nothing about which names exist in a grid they cannot see.
        response = await _call(client, method, path, body, outsider)
        assert (response.status_code, response.json()) == (403, DENIED), path
