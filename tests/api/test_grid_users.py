"""``/v1/grids/:name/users``: members read, user admins and grid admins change membership."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from core.vault import Vault
from models import AuditLog, Grid, grid_users
from models.db import Database
from tests.fixtures.audit import assert_audited
from tests.fixtures.callers import REFUSED, MakeUser, caller_headers, invalid_token_body
from tests.fixtures.grid_rows import create_grid_row

GRID = "prod"
ENDPOINTS = [
    ("GET", f"/v1/grids/{GRID}/users"),
    ("POST", f"/v1/grids/{GRID}/users"),
    ("DELETE", f"/v1/grids/{GRID}/users/member@example.com"),
]


@pytest.fixture
async def grid(db: Database, vault: Vault) -> Grid:
    return await create_grid_row(db, vault, GRID)


async def members(db: Database, grid: Grid) -> list[str]:
    """Emails of the grid's users, sorted."""
    from models import User

    async with db.session() as session:
        rows = await session.execute(
            select(User.email)
            .join(grid_users, grid_users.c.user_id == User.id)
            .where(grid_users.c.grid_id == grid.id)
        )
        return sorted(rows.scalars())


async def audit_count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditLog)))


def emails(response: httpx.Response) -> list[str]:
    return [u["email"] for u in response.json()["users"]]


@pytest.mark.parametrize("kind", list(REFUSED))
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_refused_tokens(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    db: Database,
    grid: Grid,
    kind: str,
    method: str,
    path: str,
) -> None:
    await make_user("member@example.com", grids=(GRID,))
    await make_user("new@example.com")
    headers = await caller_headers(kind, make_user, db)
    response = await client.request(
        method, path, headers=headers, json={"email": "new@example.com"}
    )
    assert (response.status_code, response.json()) == (403, invalid_token_body(kind))
    assert await members(db, grid) == ["member@example.com"]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_unknown_grid_is_404_even_for_outsiders(
    client: httpx.AsyncClient, make_user: MakeUser, method: str, path: str
) -> None:
    outsider = await make_user("out@example.com")
    response = await client.request(
        method, path.replace(GRID, "nope"), headers=outsider.headers, json={"email": "x@y.io"}
    )
    assert (response.status_code, response.json()) == (404, {"error": "Not found"})


@pytest.mark.parametrize("role", [None, "user_admin", "grid_admin"])
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_non_members_are_denied(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    db: Database,
    grid: Grid,
    role: str | None,
    method: str,
    path: str,
) -> None:
    # Even a user admin must belong to the grid: the grid is loaded before anything else.
    await make_user("member@example.com", grids=(GRID,))
    await make_user("new@example.com")
    outsider = await make_user("out@example.com", roles=(role,) if role else ())
    response = await client.request(
        method, path, headers=outsider.headers, json={"email": "new@example.com"}
    )
    assert (response.status_code, response.json()) == (403, {"error": "Access denied"})
    assert await members(db, grid) == ["member@example.com"]


@pytest.mark.parametrize("role", [None, "grid_admin", "user_admin", "master_admin"])
async def test_members_and_master_admins_list_users(
    client: httpx.AsyncClient, make_user: MakeUser, grid: Grid, role: str | None
) -> None:
    first = await make_user("first@example.com", grids=(GRID,))
    caller = await make_user("caller@example.com", roles=(role,) if role else (), grids=(GRID,))
    response = await client.get(f"/v1/grids/{GRID}/users", headers=caller.headers)
    assert response.status_code == 200
    assert emails(response) == ["first@example.com", "caller@example.com"]
    assert response.json()["users"][0] == {
        "id": first.user.id,
        "email": "first@example.com",
        "name": "first",
        "roles": [],
    }


async def test_master_admin_outside_the_grid_lists_users(
    client: httpx.AsyncClient, make_user: MakeUser, grid: Grid
) -> None:
    await make_user("member@example.com", grids=(GRID,))
    boss = await make_user("boss@example.com", roles=("master_admin",))
    response = await client.get(f"/v1/grids/{GRID}/users", headers=boss.headers)
    assert (response.status_code, emails(response)) == (200, ["member@example.com"])


async def test_plain_member_may_not_change_membership(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, grid: Grid
) -> None:
    member = await make_user("member@example.com", grids=(GRID,))
    await make_user("other@example.com", grids=(GRID,))
    await make_user("new@example.com")
    added = await client.post(
        f"/v1/grids/{GRID}/users", headers=member.headers, json={"email": "new@example.com"}
    )
    assert (added.status_code, added.json()) == (422, {"error": {"grid": "Operation not allowed"}})
    removed = await client.delete(
        f"/v1/grids/{GRID}/users/other@example.com", headers=member.headers
    )
    assert removed.status_code == 422
    assert removed.json() == {"error": {"grid": "Operation not allowed"}}
    assert await members(db, grid) == ["member@example.com", "other@example.com"]
    assert await audit_count(db) == 0


async def test_grid_admin_of_another_grid_may_not_change_membership(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, vault: Vault, grid: Grid
) -> None:
    # The grid_admin role counts only in the grids its holder belongs to.
    await create_grid_row(db, vault, "other")
    caller = await make_user("ga@example.com", roles=("grid_admin",), grids=("other",))
    await make_user("new@example.com")
    response = await client.post(
        f"/v1/grids/{GRID}/users", headers=caller.headers, json={"email": "new@example.com"}
    )
    assert (response.status_code, response.json()) == (403, {"error": "Access denied"})


@pytest.mark.parametrize("role", ["grid_admin", "user_admin", "master_admin"])
async def test_admins_assign_users(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, grid: Grid, role: str
) -> None:
    caller = await make_user("boss@example.com", roles=(role,), grids=(GRID,))
    new = await make_user("new@example.com")
    response = await client.post(
        f"/v1/grids/{GRID}/users", headers=caller.headers, json={"email": "new@example.com"}
    )
    assert response.status_code == 201
    assert emails(response) == ["boss@example.com", "new@example.com"]
    assert await members(db, grid) == ["boss@example.com", "new@example.com"]
    entry = await assert_audited(db, "user", "assign user")
    assert (entry.resource_id, entry.grid_name, entry.user_email) == (
        new.user.id,
        GRID,
        "boss@example.com",
    )
    # The new member now sees the grid.
    seen = await client.get(f"/v1/grids/{GRID}/users", headers=new.headers)
    assert seen.status_code == 200
    # Assigning again is harmless.
    again = await client.post(
        f"/v1/grids/{GRID}/users", headers=caller.headers, json={"email": "new@example.com"}
    )
    assert (again.status_code, emails(again)) == (201, ["boss@example.com", "new@example.com"])


async def test_master_admin_outside_the_grid_assigns(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, grid: Grid
) -> None:
    boss = await make_user("boss@example.com", roles=("master_admin",))
    await make_user("new@example.com")
    response = await client.post(
        f"/v1/grids/{GRID}/users", headers=boss.headers, json={"email": "new@example.com"}
    )
    assert (response.status_code, emails(response)) == (201, ["new@example.com"])


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"email": "ghost@example.com"}, 404, "User not found"),
        ({}, 422, {"email": "Email is required"}),
        ({"email": ""}, 422, {"email": "Email is too short"}),
        ({"email": ["a"]}, 422, {"email": "Email isn't a string"}),
    ],
)
async def test_assign_validation(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    db: Database,
    grid: Grid,
    body: object,
    status: int,
    error: object,
) -> None:
    boss = await make_user("boss@example.com", roles=("grid_admin",), grids=(GRID,))
    response = await client.post(f"/v1/grids/{GRID}/users", headers=boss.headers, json=body)
    assert (response.status_code, response.json()) == (status, {"error": error})
    assert await members(db, grid) == ["boss@example.com"]
    assert await audit_count(db) == 0


@pytest.mark.parametrize("role", ["grid_admin", "user_admin", "master_admin"])
async def test_admins_unassign_users(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, grid: Grid, role: str
) -> None:
    boss = await make_user("boss@example.com", roles=(role,), grids=(GRID,))
    leaver = await make_user("leaver@example.com", grids=(GRID,))
    response = await client.delete(
        f"/v1/grids/{GRID}/users/leaver@example.com", headers=boss.headers
    )
    assert (response.status_code, emails(response)) == (200, ["boss@example.com"])
    assert await members(db, grid) == ["boss@example.com"]
    entry = await assert_audited(db, "user", "unassign user")
    assert (entry.resource_id, entry.grid_name) == (leaver.user.id, GRID)
    gone = await client.get(f"/v1/grids/{GRID}/users", headers=leaver.headers)
    assert (gone.status_code, gone.json()) == (403, {"error": "Access denied"})


async def test_unassign_non_member_is_invalid_user(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, grid: Grid
) -> None:
    boss = await make_user("boss@example.com", roles=("grid_admin",), grids=(GRID,))
    await make_user("stranger@example.com")
    for email in ("stranger@example.com", "ghost@example.com"):
        response = await client.delete(f"/v1/grids/{GRID}/users/{email}", headers=boss.headers)
        assert (response.status_code, response.json()) == (
            422,
            {"error": {"user": "Invalid user"}},
        )
    assert await audit_count(db) == 0


async def test_last_user_stays(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, grid: Grid
) -> None:
    boss = await make_user("boss@example.com", roles=("grid_admin",), grids=(GRID,))
    response = await client.delete(f"/v1/grids/{GRID}/users/boss@example.com", headers=boss.headers)
    assert response.status_code == 422
    assert response.json() == {"error": {"grid": "Cannot remove last user"}}
    assert await members(db, grid) == ["boss@example.com"]
    assert await audit_count(db) == 0
