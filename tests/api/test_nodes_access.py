"""Who may call each node endpoint (§1): every endpoint by every kind of caller."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from core.nodes import token_context
from core.tokens import digest
from core.vault import Vault
from models import Grid, Node
from models.db import Database

INVALID = {"error": "invalid_token", "error_description": "Invalid token"}
EXPIRED = {"error": "invalid_token", "error_description": "Token expired"}
DENIED = {"error": "Access denied"}
NOT_FOUND = {"error": "Not found"}
HOST_TOKEN = "host-node-token-0000001"

CALLERS = [
    "no token",
    "malformed",
    "expired",
    "revoked",
    "non-member",
    "foreign grid_admin",
    "member",
    "grid_admin",
    "master_admin",
]


async def reset_nodes(db: Database, vault: Vault) -> None:
    """Grid ``main`` holds exactly one node ``host`` with a node token, as before any call."""
    async with db.session() as session:
        grid = (await session.scalars(select(Grid).where(Grid.name == "main"))).one()
        await session.execute(delete(Node).where(Node.grid_id == grid.id))
        session.add(
            Node(
                grid_id=grid.id,
                name="host",
                node_id="AAAA:BBBB:CCCC",
                node_number=1,
                token_hash=digest(HOST_TOKEN),
                token_encrypted=vault.encrypt(HOST_TOKEN, context=token_context("main", "host")),
            )
        )
        await session.commit()


def expect(
    allowed: tuple[int, Any], *, admins_only: bool, unknown_grid: bool = False
) -> list[tuple[str, int, Any]]:
    """One row per caller: token failures first, then the grid, membership, the role."""
    rows: list[tuple[str, int, Any]] = []
    for caller in CALLERS:
        if caller in ("no token", "malformed", "revoked"):
            rows.append((caller, 403, INVALID))
        elif caller == "expired":
            rows.append((caller, 403, EXPIRED))
        elif unknown_grid:
            # Kontena looks the grid up first: unknown is 404 even for outsiders.
            rows.append((caller, 404, NOT_FOUND))
        elif caller in ("non-member", "foreign grid_admin") or (caller == "member" and admins_only):
            rows.append((caller, 403, DENIED))
        else:
            rows.append((caller, *allowed))
    return rows


OK = (200, None)
MEMBERS = {"admins_only": False}
ADMINS = {"admins_only": True}
UNKNOWN_GRID = {"admins_only": False, "unknown_grid": True}
CASES: list[tuple[str, str, dict[str, Any] | None, list[tuple[str, int, Any]]]] = [
    ("GET", "/v1/grids/main/nodes", None, expect(OK, **MEMBERS)),
    ("POST", "/v1/grids/main/nodes", {"name": "new-node"}, expect((201, None), **ADMINS)),
    ("GET", "/v1/grids/main/stats", None, expect((200, {"stats": []}), **MEMBERS)),
    ("GET", "/v1/grids/main/metrics", None, expect(OK, **MEMBERS)),
    ("GET", "/v1/nodes/main/host", None, expect(OK, **MEMBERS)),
    ("GET", "/v1/nodes/main/AAAA:BBBB:CCCC", None, expect(OK, **MEMBERS)),
    ("PUT", "/v1/nodes/main/host", {"labels": ["a=b"]}, expect(OK, **MEMBERS)),
    ("DELETE", "/v1/nodes/main/host", None, expect((200, {}), **MEMBERS)),
    ("GET", "/v1/nodes/main/host/stats", None, expect((200, {"stats": []}), **MEMBERS)),
    ("GET", "/v1/nodes/main/host/metrics", None, expect(OK, **MEMBERS)),
    (
        "GET",
        "/v1/nodes/main/host/token",
        None,
        expect((200, {"id": "main/host", "token": HOST_TOKEN}), **ADMINS),
    ),
    ("PUT", "/v1/nodes/main/host/token", {"reset_connection": True}, expect(OK, **ADMINS)),
    ("DELETE", "/v1/nodes/main/host/token", None, expect((200, {}), **ADMINS)),
    # Unknown grids are 404 for everyone authenticated, before membership or role.
    ("GET", "/v1/grids/missing/nodes", None, expect(OK, **UNKNOWN_GRID)),
    ("POST", "/v1/grids/missing/nodes", {"name": "x"}, expect(OK, **UNKNOWN_GRID)),
    ("GET", "/v1/grids/missing/metrics", None, expect(OK, **UNKNOWN_GRID)),
    ("GET", "/v1/nodes/missing/host", None, expect(OK, **UNKNOWN_GRID)),
    ("GET", "/v1/nodes/missing/host/token", None, expect(OK, **UNKNOWN_GRID)),
    # Unknown nodes: 404 for members; token endpoints refuse non-admins before looking.
    ("GET", "/v1/nodes/main/nope", None, expect((404, NOT_FOUND), **MEMBERS)),
    ("DELETE", "/v1/nodes/main/nope", None, expect((404, NOT_FOUND), **MEMBERS)),
    ("GET", "/v1/nodes/main/nope/token", None, expect((404, NOT_FOUND), **ADMINS)),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "rows"),
    [pytest.param(*case, id=f"{case[0]} {case[1]}") for case in CASES],
)
async def test_access(
    client: httpx.AsyncClient,
    grid_callers: dict[str, dict[str, str]],
    db: Database,
    vault: Vault,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    rows: list[tuple[str, int, Any]],
) -> None:
    wrong = []
    for caller, status, expected in rows:
        await reset_nodes(db, vault)
        response = await client.request(method, path, json=body, headers=grid_callers[caller])
        if response.status_code != status or (expected is not None and response.json() != expected):
            wrong.append((caller, response.status_code, response.text))
        if expected in (INVALID, EXPIRED):
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="kontena_master", error="invalid_token"')
    assert wrong == []


async def test_refused_callers_change_nothing(
    client: httpx.AsyncClient, grid_callers: dict[str, dict[str, str]], db: Database, vault: Vault
) -> None:
    await reset_nodes(db, vault)
    for caller in ("no token", "expired", "non-member", "member"):
        headers = grid_callers[caller]
        await client.post("/v1/grids/main/nodes", json={"name": "sneaky"}, headers=headers)
        await client.put("/v1/nodes/main/host/token", json={"token": "z" * 20}, headers=headers)
        await client.delete("/v1/nodes/main/host/token", headers=headers)
        if caller != "member":
            await client.put("/v1/nodes/main/host", json={"labels": ["x"]}, headers=headers)
            await client.delete("/v1/nodes/main/host", headers=headers)
    async with db.session() as session:
        [row] = (await session.scalars(select(Node))).all()
    assert (row.name, row.labels, row.token_hash) == ("host", [], digest(HOST_TOKEN))
