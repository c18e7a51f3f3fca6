"""OAuth2: issuing tokens and codes, exchanging and refreshing them, listing and revoking."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis as AsyncRedis
from sqlalchemy import select, text, update

from api.app import create_app
from core.admin_tokens import create_admin_token
from core.rate_limit import RedisRateLimiter
from core.runtime import Runtime
from core.tokens import digest
from models import AccessToken, AuditLog
from models.base import utcnow
from models.db import Database
from tests.conftest import Caller
from tests.fixtures.audit import assert_no_unaudited_requests
from tests.fixtures.callers import REFUSED, MakeUser, caller_headers, invalid_token_body
from tests.fixtures.server import serve

SERVER = {"name": "kontena-master"}
AUTHED_ENDPOINTS = [
    ("GET", "/oauth2/tokens"),
    ("GET", "/oauth2/tokens/0123456789abcdef01234567"),
    ("DELETE", "/oauth2/tokens/0123456789abcdef01234567"),
    ("POST", "/oauth2/authorize"),
]


def oauth_error(error: str, description: str | None = None) -> dict[str, Any]:
    return {"error": error, "error_description": description}


def user_ref(caller: Caller) -> dict[str, str]:
    return {"id": caller.user.id, "email": caller.user.email, "name": caller.user.name or ""}


async def authorize(client: httpx.AsyncClient, caller: Caller, **params: Any) -> httpx.Response:
    return await client.post("/oauth2/authorize", headers=caller.headers, json=params)


async def stored(db: Database, token_id: str) -> AccessToken | None:
    async with db.session() as session:
        return await session.get(AccessToken, token_id)


# ------------------------------------------------------------------------ authentication


@pytest.mark.parametrize("kind", list(REFUSED))
@pytest.mark.parametrize(("method", "path"), AUTHED_ENDPOINTS)
async def test_refused_tokens(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, kind: str, method: str, path: str
) -> None:
    headers = await caller_headers(kind, make_user, db)
    async with db.session() as session:
        before = len((await session.execute(select(AccessToken))).scalars().all())
    response = await client.request(
        method, path, headers=headers, json={"response_type": "token", "scope": "user"}
    )
    assert (response.status_code, response.json()) == (403, invalid_token_body(kind))
    async with db.session() as session:
        assert len((await session.execute(select(AccessToken))).scalars().all()) == before


# ------------------------------------------------------------------------------ authorize


async def test_authorize_never_expiring_token(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    caller = await make_user("ann@example.com")
    response = await authorize(
        client, caller, response_type="token", scope="user", description="ci"
    )
    assert response.status_code == 201
    body = response.json()
    plain = body["access_token"]
    assert len(plain) == 64
    assert body == {
        "id": body["id"],
        "token_type": "bearer",
        "access_token": plain,
        "refresh_token": None,
        "access_token_last_four": plain[-4:],
        "refresh_token_last_four": None,
        "expires_in": None,
        "scopes": "user",
        "description": "ci",
        "user": user_ref(caller),
        "server": SERVER,
    }
    me = await client.get("/v1/user", headers={"Authorization": f"Bearer {plain}"})
    assert (me.status_code, me.json()["email"]) == (200, "ann@example.com")
    row = await stored(db, body["id"])
    assert row is not None and row.expires_at is None and row.token_hash == digest(plain)


async def test_authorize_expiring_token_is_refreshable(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    caller = await make_user("ann@example.com")
    response = await authorize(client, caller, response_type="token", scope="user", expires_in=600)
    body = response.json()
    assert response.status_code == 201
    assert 598 <= body["expires_in"] <= 600
    assert len(body["refresh_token"]) == 128
    assert body["refresh_token_last_four"] == body["refresh_token"][-4:]


async def test_authorize_accepts_form_bodies(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    caller = await make_user("ann@example.com")
    response = await client.post(
        "/oauth2/authorize",
        headers=caller.headers,
        data={"response_type": "token", "scope": "user", "expires_in": "60"},
    )
    assert response.status_code == 201
    assert response.json()["refresh_token"]


@pytest.mark.parametrize(
    ("params", "status", "body"),
    [
        ({"response_type": "token"}, 400, oauth_error("invalid_scope")),
        ({"response_type": "token", "scope": ""}, 400, oauth_error("invalid_scope")),
        (
            {"response_type": "token", "scope": "user,admin"},
            400,
            oauth_error("invalid_request", "Invalid scope"),
        ),
        # The caller's token holds `user` only: no minting of a stronger token.
        (
            {"response_type": "token", "scope": "user,owner"},
            400,
            oauth_error("invalid_request", "Invalid scope"),
        ),
        (
            {"response_type": "token", "scope": "user", "expires_in": "soon"},
            400,
            oauth_error("invalid_request", "Expires in isn't an integer"),
        ),
        (
            {"response_type": "token", "scope": "user", "description": "x" * 256},
            400,
            oauth_error("invalid_request", "Description is too long"),
        ),
        (
            {"response_type": "password", "scope": "user"},
            400,
            oauth_error(
                "unsupported_response_type",
                "Unsupported response type. Supported: code, token, invite",
            ),
        ),
        ({}, 400, oauth_error("invalid_request")),
        (
            {"response_type": "invite", "email": "x@example.com"},
            501,
            oauth_error("server_error", "Authentication provider not configured"),
        ),
    ],
)
async def test_authorize_rejects(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    db: Database,
    params: dict[str, Any],
    status: int,
    body: dict[str, Any],
) -> None:
    caller = await make_user("ann@example.com")
    response = await authorize(client, caller, **params)
    assert (response.status_code, response.json()) == (status, body)
    async with db.session() as session:
        assert len((await session.execute(select(AccessToken))).scalars().all()) == 1


async def test_authorize_checks_response_type_before_the_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/oauth2/authorize", json={"response_type": "nope"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_response_type"
    invite = await client.post("/oauth2/authorize", json={"response_type": "invite"})
    assert invite.status_code == 501


async def test_authorize_invalid_json(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    caller = await make_user("ann@example.com")
    response = await client.post(
        "/oauth2/authorize",
        headers={**caller.headers, "Content-Type": "application/json"},
        content=b"{nope",
    )
    assert (response.status_code, response.json()) == (
        400,
        oauth_error("invalid_request", "Invalid parameters"),
    )


async def test_owner_scope_needs_an_owner_token(
    client: httpx.AsyncClient, admin: Caller, make_user: MakeUser, db: Database
) -> None:
    # Tokens from `token create` carry user and owner and may mint either.
    issued = await create_admin_token(db, 0, "cli")
    headers = {"Authorization": f"Bearer {issued.access_token}"}
    response = await client.post(
        "/oauth2/authorize", headers=headers, json={"response_type": "token", "scope": "user,owner"}
    )
    assert (response.status_code, response.json()["scopes"]) == (201, "user,owner")


@pytest.mark.parametrize("kind", ["non-admin user", "grid member", "user_admin", "grid_admin"])
async def test_only_master_admins_issue_for_others(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, kind: str
) -> None:
    await make_user("target@example.com")
    if kind in ("user_admin", "grid_admin"):
        headers = (await make_user("boss@example.com", roles=(kind,))).headers
    else:
        headers = await caller_headers(kind, make_user, db)
    response = await client.post(
        "/oauth2/authorize",
        headers=headers,
        json={"response_type": "token", "scope": "user", "user": "target@example.com"},
    )
    assert response.status_code == 403
    assert response.json() == oauth_error(
        "access_denied", "Only a master admin may create tokens for other users"
    )


async def test_master_admin_issues_for_others(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    boss = await make_user("boss@example.com", roles=("master_admin",))
    target = await make_user("target@example.com")
    response = await authorize(
        client, boss, response_type="token", scope="user", user="target@example.com"
    )
    assert (response.status_code, response.json()["user"]) == (201, user_ref(target))
    me = await client.get(
        "/v1/user", headers={"Authorization": f"Bearer {response.json()['access_token']}"}
    )
    assert me.json()["email"] == "target@example.com"
    unknown = await authorize(
        client, boss, response_type="token", scope="user", user="ghost@example.com"
    )
    assert (unknown.status_code, unknown.json()) == (
        404,
        oauth_error("not_found", "User not found"),
    )
    # Naming oneself is always fine.
    own = await authorize(
        client, target, response_type="token", scope="user", user=target.user.email
    )
    assert own.status_code == 201


# ---------------------------------------------------------------- authorization code flow


async def test_code_flow_end_to_end(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    caller = await make_user("ann@example.com")
    response = await authorize(
        client, caller, response_type="code", scope="user", expires_in=3600, description="laptop"
    )
    assert response.status_code == 201
    coded = response.json()
    code = coded["code"]
    assert len(code) == 12
    assert coded == {
        "id": coded["id"],
        "grant_type": "authorization_code",
        "code": code,
        "scopes": "user",
        "description": "laptop",
        "user": user_ref(caller),
        "server": SERVER,
    }
    code_row = await stored(db, coded["id"])
    assert code_row is not None and code_row.expires_at is not None
    # A code is not a bearer token.
    refused = await client.get("/v1/user", headers={"Authorization": f"Bearer {code}"})
    assert refused.status_code == 403

    exchanged = await client.post(
        "/oauth2/token", json={"grant_type": "authorization_code", "code": code}
    )
    assert exchanged.status_code == 201
    token = exchanged.json()
    assert token["token_type"] == "bearer"
    assert (token["scopes"], token["description"], token["user"]) == (
        "user",
        "laptop",
        user_ref(caller),
    )
    assert 3590 <= token["expires_in"] <= 3600
    assert token["refresh_token"]
    assert await stored(db, coded["id"]) is None
    new_row = await stored(db, token["id"])
    assert new_row is not None and new_row.expires_at == code_row.expires_at
    me = await client.get("/v1/user", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert (me.status_code, me.json()["email"]) == (200, "ann@example.com")

    reused = await client.post(
        "/oauth2/token", json={"grant_type": "authorization_code", "code": code}
    )
    assert (reused.status_code, reused.json()) == (
        404,
        oauth_error("invalid_request", "Invalid or already used code"),
    )


async def test_code_exchange_with_form_body_and_never_expiring_code(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    caller = await make_user("ann@example.com")
    code = (await authorize(client, caller, response_type="code", scope="user")).json()["code"]
    exchanged = await client.post(
        "/oauth2/token", data={"grant_type": "authorization_code", "code": code}
    )
    assert exchanged.status_code == 201
    body = exchanged.json()
    assert (body["expires_in"], body["refresh_token"]) == (None, None)


async def test_unknown_code(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/oauth2/token", json={"grant_type": "authorization_code", "code": "abcdef123456"}
    )
    assert (response.status_code, response.json()) == (
        404,
        oauth_error("invalid_request", "Invalid or already used code"),
    )


# -------------------------------------------------------------------------- refresh flow


async def _expiring_token(client: httpx.AsyncClient, caller: Caller) -> dict[str, Any]:
    response = await authorize(
        client, caller, response_type="token", scope="user", expires_in=60, description="short"
    )
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def test_refresh_flow_end_to_end(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    caller = await make_user("ann@example.com")
    old = await _expiring_token(client, caller)
    refreshed = await client.post(
        "/oauth2/token", json={"grant_type": "refresh_token", "refresh_token": old["refresh_token"]}
    )
    assert refreshed.status_code == 201
    new = refreshed.json()
    assert 7190 <= new["expires_in"] <= 7200
    assert (new["scopes"], new["description"], new["user"]) == ("user", "short", user_ref(caller))
    assert new["refresh_token"] and new["refresh_token"] != old["refresh_token"]
    me = await client.get("/v1/user", headers={"Authorization": f"Bearer {new['access_token']}"})
    assert me.status_code == 200
    # The old token was consumed with its refresh token.
    gone = await client.get("/v1/user", headers={"Authorization": f"Bearer {old['access_token']}"})
    assert (gone.status_code, gone.json()) == (403, invalid_token_body("revoked token"))
    assert await stored(db, old["id"]) is None
    reused = await client.post(
        "/oauth2/token", json={"grant_type": "refresh_token", "refresh_token": old["refresh_token"]}
    )
    assert (reused.status_code, reused.json()) == (
        404,
        oauth_error("invalid_request", "Invalid or already used refresh token"),
    )


async def test_refresh_works_for_an_expired_access_token(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    caller = await make_user("ann@example.com")
    old = await _expiring_token(client, caller)
    async with db.session() as session:
        await session.execute(
            update(AccessToken)
            .where(AccessToken.id == old["id"])
            .values(expires_at=utcnow() - timedelta(hours=1))
        )
        await session.commit()
    expired = await client.get(
        "/v1/user", headers={"Authorization": f"Bearer {old['access_token']}"}
    )
    assert (expired.status_code, expired.json()) == (403, invalid_token_body("expired token"))
    refreshed = await client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": old["refresh_token"]},
    )
    assert refreshed.status_code == 201
    new_token = refreshed.json()["access_token"]
    me = await client.get("/v1/user", headers={"Authorization": f"Bearer {new_token}"})
    assert me.status_code == 200


async def test_refresh_settings_decide_the_new_lifetime(
    runtime: Runtime, make_user: MakeUser
) -> None:
    settings = msgspec.structs.replace(runtime.settings, refresh_token_expires_in=90)
    app = create_app(dataclasses.replace(runtime, settings=settings))
    caller = await make_user("ann@example.com")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        old = await _expiring_token(client, caller)
        new = await client.post(
            "/oauth2/token",
            json={"grant_type": "refresh_token", "refresh_token": old["refresh_token"]},
        )
    assert 85 <= new.json()["expires_in"] <= 90


@pytest.mark.parametrize(
    ("params", "status", "body"),
    [
        (
            {"grant_type": "authorization_code"},
            400,
            oauth_error("invalid_request", "Missing parameter: code"),
        ),
        (
            {"grant_type": "refresh_token", "refresh_token": " "},
            400,
            oauth_error("invalid_request", "Missing parameter: refresh_token"),
        ),
        (
            {"grant_type": "password", "username": "a"},
            400,
            oauth_error(
                "unsupported_grant_type",
                "Unsupported grant type. Supported: authorization_code, refresh_token",
            ),
        ),
        ({}, 400, oauth_error("invalid_request")),
    ],
)
async def test_token_endpoint_rejects(
    client: httpx.AsyncClient, params: dict[str, Any], status: int, body: dict[str, Any]
) -> None:
    response = await client.post("/oauth2/token", json=params)
    assert (response.status_code, response.json()) == (status, body)


async def test_token_endpoint_ignores_authorization_header(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    caller = await make_user("ann@example.com")
    code = (await authorize(client, caller, response_type="code", scope="user")).json()["code"]
    response = await client.post(
        "/oauth2/token",
        headers={"Authorization": "Bearer garbage"},
        json={"grant_type": "authorization_code", "code": code},
    )
    assert response.status_code == 201


async def test_token_endpoint_is_rate_limited(runtime: Runtime, make_user: MakeUser) -> None:
    limit = 3
    settings = msgspec.structs.replace(
        runtime.settings, token_rate_limit=limit, token_rate_window=86_400
    )
    limiter = RedisRateLimiter(AsyncRedis.from_url(settings.redis_url), limit, 86_400)
    app = create_app(dataclasses.replace(runtime, settings=settings, rate_limiter=limiter))
    caller = await make_user("ann@example.com")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        statuses = []
        for _ in range(limit):
            code = (await authorize(client, caller, response_type="code", scope="user")).json()
            response = await client.post(
                "/oauth2/token", json={"grant_type": "authorization_code", "code": code["code"]}
            )
            statuses.append(response.status_code)
        assert statuses == [201] * limit
        code = (await authorize(client, caller, response_type="code", scope="user")).json()
        limited = await client.post(
            "/oauth2/token", json={"grant_type": "authorization_code", "code": code["code"]}
        )
        assert (limited.status_code, limited.json()) == (429, {"error": "too_many_requests"})
        assert int(limited.headers["retry-after"]) > 0
        # The refused request did not consume the code.
        code_row = await client.get(f"/oauth2/tokens/{code['id']}", headers=caller.headers)
        assert code_row.status_code == 200
        # Other endpoints are not limited.
        assert (await client.get("/v1/user", headers=caller.headers)).status_code == 200


# ------------------------------------------------------------------------ listing tokens


async def test_list_own_tokens_without_secrets(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    caller = await make_user("ann@example.com")
    other = await make_user("bob@example.com")
    issued = await _expiring_token(client, caller)
    code = (await authorize(client, caller, response_type="code", scope="user")).json()
    await authorize(client, other, response_type="token", scope="user")
    response = await client.get("/oauth2/tokens", headers=caller.headers)
    assert response.status_code == 200
    tokens = response.json()["tokens"]
    assert [t["id"] for t in tokens][1:] == [issued["id"], code["id"]]
    listed = tokens[1]
    assert listed == {
        **issued,
        "access_token": None,
        "refresh_token": None,
        "expires_in": listed["expires_in"],
    }
    assert tokens[2] == {**code, "code": None}
    assert tokens[0]["access_token_last_four"] == caller.token[-4:]


# ---------------------------------------------------------------- reading and revoking


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_other_users_tokens_are_unauthorized(
    client: httpx.AsyncClient, make_user: MakeUser, method: str
) -> None:
    owner = await make_user("ann@example.com")
    for role in ("", "user_admin", "grid_admin"):
        roles = (role,) if role else ()
        other = await make_user(f"other-{role or 'plain'}@example.com", roles=roles)
        mine = await _expiring_token(client, owner)
        response = await client.request(
            method, f"/oauth2/tokens/{mine['id']}", headers=other.headers
        )
        assert (response.status_code, response.json()) == (401, oauth_error("Unauthorized"))
        still = await client.get(
            "/v1/user", headers={"Authorization": f"Bearer {mine['access_token']}"}
        )
        assert still.status_code == 200


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_unknown_token_is_not_found(
    client: httpx.AsyncClient, make_user: MakeUser, method: str
) -> None:
    caller = await make_user("ann@example.com")
    response = await client.request(method, "/oauth2/tokens/nope", headers=caller.headers)
    assert (response.status_code, response.json()) == (404, oauth_error("Not found"))


@pytest.mark.parametrize("viewer", ["owner", "master_admin"])
async def test_get_token_by_id_or_plain_value(
    client: httpx.AsyncClient, make_user: MakeUser, viewer: str
) -> None:
    owner = await make_user("ann@example.com")
    boss = await make_user("boss@example.com", roles=("master_admin",))
    headers = owner.headers if viewer == "owner" else boss.headers
    issued = await _expiring_token(client, owner)
    for key in (issued["id"], issued["access_token"]):
        response = await client.get(f"/oauth2/tokens/{key}", headers=headers)
        assert response.status_code == 200
        assert response.json() == {
            **issued,
            "access_token": None,
            "refresh_token": None,
            "expires_in": response.json()["expires_in"],
        }


@pytest.mark.parametrize("revoker", ["owner", "master_admin"])
async def test_delete_token_revokes_it(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database, revoker: str
) -> None:
    owner = await make_user("ann@example.com")
    boss = await make_user("boss@example.com", roles=("master_admin",))
    headers = owner.headers if revoker == "owner" else boss.headers
    issued = await _expiring_token(client, owner)
    response = await client.delete(f"/oauth2/tokens/{issued['id']}", headers=headers)
    assert (response.status_code, response.content) == (201, b"")
    refused = await client.get(
        "/v1/user", headers={"Authorization": f"Bearer {issued['access_token']}"}
    )
    assert (refused.status_code, refused.json()) == (403, invalid_token_body("revoked token"))
    # Its refresh token died with it.
    refresh = await client.post(
        "/oauth2/token",
        json={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
    )
    assert refresh.status_code == 404
    async with db.session() as session:
        entries = (
            (await session.execute(select(AuditLog).where(AuditLog.event_name == "delete")))
            .scalars()
            .all()
        )
    assert [(e.resource_type, e.resource_id) for e in entries] == [("access_token", issued["id"])]


async def test_a_token_may_revoke_itself_by_value(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    caller = await make_user("ann@example.com")
    response = await client.delete(f"/oauth2/tokens/{caller.token}", headers=caller.headers)
    assert response.status_code == 201
    after = await client.get("/oauth2/tokens", headers=caller.headers)
    assert (after.status_code, after.json()) == (403, invalid_token_body("revoked token"))


# ------------------------------------------------------------- secrets at rest, audit


async def test_database_holds_no_plaintext_secrets(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    caller = await make_user("ann@example.com")
    secrets = [caller.token]
    token = await _expiring_token(client, caller)
    secrets += [token["access_token"], token["refresh_token"]]
    coded = await authorize(client, caller, response_type="code", scope="user", expires_in=60)
    code = coded.json()["code"]
    secrets.append(code)
    pending = (await authorize(client, caller, response_type="code", scope="user")).json()["code"]
    secrets.append(pending)
    exchanged = (
        await client.post("/oauth2/token", json={"grant_type": "authorization_code", "code": code})
    ).json()
    secrets += [exchanged["access_token"], exchanged["refresh_token"]]
    refreshed = (
        await client.post(
            f"/oauth2/token?grant_type=refresh_token&refresh_token={exchanged['refresh_token']}"
        )
    ).json()
    secrets += [refreshed["access_token"], refreshed["refresh_token"]]
    await client.delete(f"/oauth2/tokens/{refreshed['access_token']}", headers=caller.headers)
    async with db.session() as session:
        dumps = [
            str(row)
            for table in ("access_tokens", "audit_logs")
            for row in (await session.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608
        ]
    assert dumps
    for secret in secrets:
        assert len(secret) >= 12
        assert not any(secret in dump for dump in dumps)
    await assert_no_unaudited_requests(db)


async def test_token_issues_are_audited(
    client: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    caller = await make_user("ann@example.com")
    coded = (await authorize(client, caller, response_type="code", scope="user")).json()
    token = (
        await client.post(
            "/oauth2/token", json={"grant_type": "authorization_code", "code": coded["code"]}
        )
    ).json()
    async with db.session() as session:
        entries = (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
    assert [(e.resource_type, e.event_name, e.resource_id, e.user_email) for e in entries] == [
        ("access_token", "create", coded["id"], "ann@example.com"),
        ("access_token", "create", token["id"], None),
    ]
    assert all(e.request_body is None and e.request_parameters == {} for e in entries)


# ------------------------------------------------------------------ token create (CLI)


@pytest.mark.parametrize("expires_in", [0, 600])
async def test_create_admin_token(client: httpx.AsyncClient, db: Database, expires_in: int) -> None:
    issued = await create_admin_token(db, expires_in, "from the cli")
    assert issued.access_token
    me = await client.get("/v1/user", headers={"Authorization": f"Bearer {issued.access_token}"})
    assert (me.status_code, me.json()["email"]) == (200, "admin")
    assert [r["name"] for r in me.json()["roles"]] == ["master_admin"]
    row = await stored(db, issued.token.id)
    assert row is not None
    assert (row.scopes, row.description) == (["user", "owner"], "from the cli")
    assert (row.expires_at is None) == (expires_in == 0)
    assert (issued.refresh_token is None) == (expires_in == 0)
    # A second call reuses the admin.
    again = await create_admin_token(db, 0, "again")
    assert again.token.user_id == issued.token.user_id


async def test_a_code_is_exchanged_once_even_when_requests_race(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    caller = await make_user("ann@example.com")
    code = (await authorize(client, caller, response_type="code", scope="user")).json()["code"]
    responses = await asyncio.gather(
        *(
            client.post("/oauth2/token", json={"grant_type": "authorization_code", "code": code})
            for _ in range(5)
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 404, 404, 404, 404]
