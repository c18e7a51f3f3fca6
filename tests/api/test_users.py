"""``/v1/user`` and ``/v1/users``: who may list, create and remove users and change roles."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from models import AccessToken, AuditLog, User
from models.db import Database
from tests.conftest import Caller
from tests.fixtures.audit import assert_audited
from tests.fixtures.callers import REFUSED, MakeUser, caller_headers, invalid_token_body

ENDPOINTS = [
    ("GET", "/v1/user"),
    ("GET", "/v1/users"),
    ("POST", "/v1/users"),
    ("DELETE", "/v1/users/someone@example.com"),
    ("POST", "/v1/users/someone@example.com/roles"),
    ("DELETE", "/v1/users/someone@example.com/roles/grid_admin"),
]
NOT_ALLOWED = {"error": "Operation not allowed"}


def user_json(caller: Caller, roles: list[tuple[str, str]] | None = None) -> dict[str, object]:
    """The JSON Kontena renders for a user made by ``make_user``."""
    return {
        "id": caller.user.id,
        "email": caller.user.email,
        "name": caller.user.name,
        "roles": [{"name": n, "description": d} for n, d in roles or []],
    }


async def count(db: Database, model: type, *where: object) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def role_description(db: Database, name: str) -> str:
    from models import Role

    async with db.session() as session:
        role = (await session.execute(select(Role).where(Role.name == name))).scalar_one()
        return role.description


@pytest.mark.parametrize("kind", list(REFUSED))
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_refused_tokens_get_invalid_token(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, kind: str, method: str, path: str
) -> None:
    await make_user("someone@example.com")
    headers = await caller_headers(kind, make_user, db)
    response = await client.request(method, path, headers=headers, json={"email": "x@example.com"})
    assert response.status_code == 403
    assert response.json() == invalid_token_body(kind)
    assert response.headers["www-authenticate"].startswith('Bearer realm="kontena_master"')
    assert await count(db, User, User.email == "x@example.com") == 0
    assert await count(db, AuditLog) == 0


async def test_current_user_with_roles(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    caller = await make_user("ann@example.com", roles=("grid_admin", "user_admin"))
    response = await client.get("/v1/user", headers=caller.headers)
    assert response.status_code == 200
    expected = [
        ("grid_admin", await role_description(db, "grid_admin")),
        ("user_admin", await role_description(db, "user_admin")),
    ]
    assert response.json() == user_json(caller, expected)


@pytest.mark.parametrize("kind", ["non-admin user", "grid member"])
async def test_plain_users_may_not_list_or_create_users(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, kind: str
) -> None:
    headers = await caller_headers(kind, make_user, db)
    listed = await client.get("/v1/users", headers=headers)
    assert (listed.status_code, listed.json()) == (403, NOT_ALLOWED)
    created = await client.post("/v1/users", headers=headers, json={"email": "new@example.com"})
    assert (created.status_code, created.json()) == (403, NOT_ALLOWED)
    assert await count(db, User, User.email == "new@example.com") == 0
    assert await count(db, AuditLog) == 0


@pytest.mark.parametrize("role", ["user_admin", "master_admin"])
async def test_admins_list_users(client: httpx.AsyncClient, make_user: MakeUser, role: str) -> None:
    admin = await make_user("boss@example.com", roles=(role,))
    other = await make_user("other@example.com")
    response = await client.get("/v1/users", headers=admin.headers)
    assert response.status_code == 200
    emails = [u["email"] for u in response.json()["users"]]
    assert emails == ["boss@example.com", "other@example.com"]
    assert response.json()["users"][1] == user_json(other)


@pytest.mark.parametrize("role", ["user_admin", "master_admin"])
async def test_admins_create_users(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, role: str
) -> None:
    admin = await make_user("boss@example.com", roles=(role,))
    response = await client.post(
        "/v1/users", headers=admin.headers, json={"email": "new@example.com", "name": "New"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "email": "new@example.com", "name": "New", "roles": []}
    async with db.session() as session:
        stored = (
            await session.execute(select(User).where(User.email == "new@example.com"))
        ).scalar_one()
    assert stored.id == body["id"]
    entry = await assert_audited(db, "user", "create")
    assert (entry.resource_id, entry.user_email) == (body["id"], "boss@example.com")


async def test_local_admin_creates_users(client: httpx.AsyncClient, admin: Caller) -> None:
    response = await client.post("/v1/users", headers=admin.headers, json={"email": "a@b.io"})
    assert response.status_code == 201
    assert response.json()["name"] is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, {"email": "Email is required"}),
        ({"email": "not-an-email"}, {"email": "Email isn't in the right format"}),
        ({"email": "a@b"}, {"email": "Email isn't in the right format"}),
        ({"email": 5}, {"email": "Email isn't a string"}),
        ({"email": "a@example.com", "name": "x" * 256}, {"name": "Name is too long"}),
        (
            {"email": "taken@example.com"},
            {"email": "User with email taken@example.com already exists"},
        ),
    ],
)
async def test_create_user_validation(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, body: object, error: object
) -> None:
    admin = await make_user("boss@example.com", roles=("user_admin",))
    await make_user("taken@example.com")
    response = await client.post("/v1/users", headers=admin.headers, json=body)
    assert response.status_code == 422
    assert response.json() == {"error": error}
    assert await count(db, User) == 2
    assert await count(db, AuditLog) == 0


async def test_create_user_invalid_json(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    admin = await make_user("boss@example.com", roles=("user_admin",))
    response = await client.post("/v1/users", headers=admin.headers, content=b"{nope")
    assert (response.status_code, response.json()) == (400, {"error": "Invalid json"})


# ---------------------------------------------------------------------------- delete user


@pytest.mark.parametrize("kind", ["non-admin user", "grid member"])
async def test_plain_users_may_not_delete_users(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, kind: str
) -> None:
    await make_user("victim@example.com")
    headers = await caller_headers(kind, make_user, db)
    response = await client.delete("/v1/users/victim@example.com", headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": {"user": "Operation not allowed"}}
    assert await count(db, User, User.email == "victim@example.com") == 1


async def test_nobody_removes_itself(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    boss = await make_user("boss@example.com", roles=("master_admin",))
    response = await client.delete("/v1/users/boss@example.com", headers=boss.headers)
    assert response.status_code == 400
    assert response.json() == {"error": {"user": "Cannot remove itself"}}


async def test_delete_unknown_user_is_not_found(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    boss = await make_user("boss@example.com", roles=("user_admin",))
    response = await client.delete("/v1/users/ghost@example.com", headers=boss.headers)
    assert (response.status_code, response.json()) == (404, {"error": "Not found"})


@pytest.mark.parametrize("role", ["user_admin", "master_admin"])
async def test_admins_delete_users_and_their_tokens(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, role: str
) -> None:
    boss = await make_user("boss@example.com", roles=(role,))
    victim = await make_user("victim@example.com")
    response = await client.delete("/v1/users/victim@example.com", headers=boss.headers)
    assert (response.status_code, response.json()) == (200, {})
    assert await count(db, User, User.email == "victim@example.com") == 0
    assert await count(db, AccessToken, AccessToken.user_id == victim.user.id) == 0
    refused = await client.get("/v1/user", headers=victim.headers)
    assert (refused.status_code, refused.json()) == (403, invalid_token_body("no token"))
    entry = await assert_audited(db, "user", "delete")
    assert (entry.resource_id, entry.resource_name) == (victim.user.id, "victim@example.com")


# ---------------------------------------------------------------------------------- roles


@pytest.mark.parametrize("kind", ["non-admin user", "grid member", "user_admin", "grid_admin"])
async def test_only_master_admins_add_roles(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, kind: str
) -> None:
    target = await make_user("target@example.com")
    if kind in ("user_admin", "grid_admin"):
        headers = (await make_user("boss@example.com", roles=(kind,))).headers
    else:
        headers = await caller_headers(kind, make_user, db)
    response = await client.post(
        "/v1/users/target@example.com/roles", headers=headers, json={"role": "grid_admin"}
    )
    assert response.status_code == 422
    assert response.json() == {"error": {"current_user": "Operation not allowed"}}
    me = await client.get("/v1/user", headers=target.headers)
    assert me.json()["roles"] == []


@pytest.mark.parametrize("boss_role", ["master_admin", None])
async def test_master_admins_add_roles(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, admin: Caller, boss_role: str
) -> None:
    # The local `admin` is a master admin by name; others by role.
    boss = await make_user("boss@example.com", roles=(boss_role,)) if boss_role else admin
    target = await make_user("target@example.com")
    response = await client.post(
        "/v1/users/target@example.com/roles", headers=boss.headers, json={"role": "grid_admin"}
    )
    assert response.status_code == 201
    described = [("grid_admin", await role_description(db, "grid_admin"))]
    assert response.json() == user_json(target, described)
    # Adding it again changes nothing.
    again = await client.post(
        "/v1/users/target@example.com/roles", headers=boss.headers, json={"role": "grid_admin"}
    )
    assert (again.status_code, again.json()) == (201, user_json(target, described))
    me = await client.get("/v1/user", headers=target.headers)
    assert me.json()["roles"] == [{"name": n, "description": d} for n, d in described]
    entries = [
        e
        for e in await _audit(db)
        if (e.resource_type, e.event_name, e.resource_id) == ("user", "add role", target.user.id)
    ]
    assert len(entries) == 2


async def _audit(db: Database) -> list[AuditLog]:
    async with db.session() as session:
        return list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"role": "overlord"}, {"role": "Role 'overlord' not found"}),
        ({}, {"role": "Role is required"}),
        ({"role": 3}, {"role": "Role isn't a string"}),
    ],
)
async def test_add_role_validation(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, body: object, error: object
) -> None:
    boss = await make_user("boss@example.com", roles=("master_admin",))
    await make_user("target@example.com")
    response = await client.post(
        "/v1/users/target@example.com/roles", headers=boss.headers, json=body
    )
    assert (response.status_code, response.json()) == (422, {"error": error})
    assert await count(db, AuditLog) == 0


async def test_add_role_to_unknown_user(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    boss = await make_user("boss@example.com", roles=("master_admin",))
    response = await client.post(
        "/v1/users/ghost@example.com/roles", headers=boss.headers, json={"role": "grid_admin"}
    )
    assert (response.status_code, response.json()) == (404, {"error": "Not found"})


async def test_master_admins_remove_roles(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    boss = await make_user("boss@example.com", roles=("master_admin",))
    target = await make_user("target@example.com", roles=("grid_admin", "user_admin"))
    response = await client.delete(
        "/v1/users/target@example.com/roles/grid_admin", headers=boss.headers
    )
    assert response.status_code == 200
    described = [("user_admin", await role_description(db, "user_admin"))]
    assert response.json() == user_json(target, described)
    await assert_audited(db, "user", "remove role", resource_id=target.user.id)


async def test_others_may_not_remove_roles(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    boss = await make_user("boss@example.com", roles=("user_admin",))
    await make_user("target@example.com", roles=("grid_admin",))
    response = await client.delete(
        "/v1/users/target@example.com/roles/grid_admin", headers=boss.headers
    )
    assert response.status_code == 422
    assert response.json() == {"error": {"current_user": "Operation not allowed"}}
    unknown = await client.delete("/v1/users/target@example.com/roles/nope", headers=boss.headers)
    assert unknown.json() == {"error": {"role": "Role 'nope' not found"}}


async def test_last_master_admin_keeps_the_role(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    boss = await make_user("boss@example.com", roles=("master_admin",))
    response = await client.delete(
        "/v1/users/boss@example.com/roles/master_admin", headers=boss.headers
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": {"role": "Not allowed to remove last user from Master admin role"}
    }
    # With a second master admin the first may step down.
    await make_user("second@example.com", roles=("master_admin",))
    response = await client.delete(
        "/v1/users/boss@example.com/roles/master_admin", headers=boss.headers
    )
    assert (response.status_code, response.json()["roles"]) == (200, [])
    assert (await client.get("/v1/users", headers=boss.headers)).status_code == 403
