"""``/v1/config``: authorization, merge/replace/delete semantics, secrets, validation, audit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from core import config_store
from core.vault import Vault
from models import AuditLog, User
from models.db import Database
from tests.fixtures.audit import assert_audited, assert_no_unaudited_requests, audit_entries
from tests.fixtures.callers import (
    KINDS,
    MASTER_ADMIN,
    PLAIN_USERS,
    REFUSED,
    caller_headers,
    invalid_token_body,
)
from tests.fixtures.grid_rows import create_grid_row

SECRET = "s3cr3t-plain-value"
ENDPOINTS = [
    ("GET", "/v1/config", None),
    ("GET", "/v1/config/keep.me", None),
    ("PATCH", "/v1/config", {"foo.bar": "x"}),
    ("PUT", "/v1/config", {"foo.bar": "x"}),
    ("DELETE", "/v1/config", None),
    ("DELETE", "/v1/config/keep.me", None),
]


async def seed(db: Database, vault: Vault, values: dict[str, Any]) -> None:
    """Store ``values`` through the config store, bypassing the API."""
    async with db.session() as session:
        for key, value in values.items():
            await config_store.put_value(session, vault, key, value)
        await session.commit()


async def raw_rows(db: Database) -> dict[str, tuple[str, bool]]:
    """The configuration table as stored: key → (value text, encrypted)."""
    async with db.session() as session:
        rows = await session.execute(text("SELECT key, value, encrypted FROM configuration"))
        return {key: (value, encrypted) for key, value, encrypted in rows}


@pytest.fixture
async def admin_headers(make_user: Any) -> dict[str, str]:
    """A user holding the master_admin role."""
    return dict((await make_user("root@example.com", roles=("master_admin",))).headers)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_only_master_admins_use_the_config_api(
    client: httpx.AsyncClient,
    db: Database,
    vault: Vault,
    make_user: Any,
    kind: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    await create_grid_row(db, vault, "alpha")
    await seed(db, vault, {"keep.me": "v"})
    before = await raw_rows(db)
    headers = await caller_headers(kind, make_user, db, grid="alpha")

    response = await client.request(method, path, json=body, headers=headers)

    if kind in REFUSED:
        assert response.status_code == 403
        assert response.json() == invalid_token_body(kind)
    elif kind in PLAIN_USERS:
        assert response.status_code == 403
        assert response.json() == {"error": "access_denied"}
    else:
        assert kind == MASTER_ADMIN
        assert response.status_code == (200 if method == "GET" else 201)
        if method == "GET":
            assert response.json() == {"keep.me": "v"}
        else:
            assert response.json() == {}
            await assert_no_unaudited_requests(db)
            assert await audit_entries(db, resource_type="config")
        return
    assert await raw_rows(db) == before
    assert await audit_entries(db) == []


async def test_empty_store_lists_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get("/v1/config", headers=admin_headers)
    assert response.status_code == 200
    assert response.json() == {}


async def test_patch_merges_keys_and_null_removes_one(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    await seed(db, vault, {"a.one": 1, "z.gone": "bye"})
    body = {"c.flag": True, "b.text": "x", "d.ratio": 1.5, "z.gone": None, "e.none": None}

    response = await client.patch("/v1/config", json=body, headers=admin_headers)

    assert response.status_code == 201
    assert response.json() == {}
    listed = (await client.get("/v1/config", headers=admin_headers)).json()
    assert listed == {"a.one": 1, "b.text": "x", "c.flag": True, "d.ratio": 1.5}
    assert list(listed) == sorted(listed)


async def test_patch_overwrites_an_existing_key(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    await seed(db, vault, {"server.name": "old"})
    await client.patch("/v1/config", json={"server.name": "new"}, headers=admin_headers)
    response = await client.get("/v1/config/server.name", headers=admin_headers)
    assert response.json() == {"server.name": "new"}


async def test_put_replaces_everything_but_the_salt(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    await seed(db, vault, {"a.old": "1", "b.old": "2", "server.salt": "pepper"})

    response = await client.put(
        "/v1/config", json={"c.new": "3", "server.salt": "evil"}, headers=admin_headers
    )

    assert response.status_code == 201
    assert response.json() == {}
    assert (await client.get("/v1/config", headers=admin_headers)).json() == {"c.new": "3"}
    async with db.session() as session:
        assert await config_store.get_value(session, vault, "server.salt") == "pepper"


async def test_delete_all_keeps_only_the_salt(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    await seed(db, vault, {"a.old": "1", "server.salt": "pepper"})

    response = await client.delete("/v1/config", headers=admin_headers)

    assert response.status_code == 201
    assert response.json() == {}
    assert set(await raw_rows(db)) == {"server.salt"}
    await assert_audited(db, "config", "destroy_all")


async def test_delete_one_key(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    await seed(db, vault, {"a.keep": "1", "b.drop": "2"})

    response = await client.delete("/v1/config/b.drop", headers=admin_headers)
    assert response.status_code == 201
    assert response.json() == {}
    assert set(await raw_rows(db)) == {"a.keep"}

    unknown = await client.delete("/v1/config/never.set", headers=admin_headers)
    assert unknown.status_code == 201
    assert unknown.json() == {}


async def test_get_one_key_or_404(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    await seed(db, vault, {"server.name": "kontena", "server.salt": "pepper"})

    found = await client.get("/v1/config/server.name", headers=admin_headers)
    assert found.status_code == 200
    assert found.json() == {"server.name": "kontena"}
    for key in ("never.set", "server.salt"):
        missing = await client.get(f"/v1/config/{key}", headers=admin_headers)
        assert missing.status_code == 404
        assert missing.json() == {"error": "Not found"}


async def test_salt_is_hidden_and_cannot_be_changed_or_removed(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    await seed(db, vault, {"server.salt": "pepper", "server.name": "k"})

    assert (await client.get("/v1/config", headers=admin_headers)).json() == {"server.name": "k"}
    await client.patch("/v1/config", json={"server.salt": "evil"}, headers=admin_headers)
    await client.delete("/v1/config/server.salt", headers=admin_headers)

    async with db.session() as session:
        assert await config_store.get_value(session, vault, "server.salt") == "pepper"


async def test_filter_by_prefix_or_substring(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    await seed(
        db,
        vault,
        {"oauth2.client_id": "id", "oauth2.token_method": "post", "cloud.oauth2": "x", "ab": "y"},
    )

    async def listed(filter_: str) -> dict[str, Any]:
        response = await client.get("/v1/config", params={"filter": filter_}, headers=admin_headers)
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    assert await listed("oauth2.*") == {"oauth2.client_id": "id", "oauth2.token_method": "post"}
    assert await listed("oauth2") == {
        "cloud.oauth2": "x",
        "oauth2.client_id": "id",
        "oauth2.token_method": "post",
    }
    # LIKE wildcards in the filter are literal characters.
    assert await listed("a%*") == {}
    assert await listed("a_") == {}


async def test_secret_values_are_encrypted_and_never_returned(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    response = await client.patch(
        "/v1/config",
        json={"oauth2.client_secret": SECRET, "oauth2.client_id": "public-id"},
        headers=admin_headers,
    )
    assert response.status_code == 201

    stored_value, encrypted = (await raw_rows(db))["oauth2.client_secret"]
    assert encrypted is True
    assert SECRET not in stored_value
    assert stored_value.startswith("kv1:")
    listed = await client.get("/v1/config", headers=admin_headers)
    assert listed.json() == {"oauth2.client_id": "public-id", "oauth2.client_secret": "********"}
    assert SECRET not in listed.text
    one = await client.get("/v1/config/oauth2.client_secret", headers=admin_headers)
    assert one.json() == {"oauth2.client_secret": "********"}
    filtered = await client.get(
        "/v1/config", params={"filter": "oauth2.client_s*"}, headers=admin_headers
    )
    assert filtered.json() == {"oauth2.client_secret": "********"}
    async with db.session() as session:
        assert await config_store.get_value(session, vault, "oauth2.client_secret") == SECRET
        assert await config_store.get_value(session, vault, "oauth2.client_id") == "public-id"
        assert await config_store.get_value(session, vault, "never.set") is None


async def test_secret_ciphertext_is_bound_to_its_key(db: Database, vault: Vault) -> None:
    await seed(db, vault, {"a_secret": SECRET})
    async with db.session() as session:
        await session.execute(
            text("UPDATE configuration SET key = 'b_secret' WHERE key = 'a_secret'")
        )
        await session.commit()
    async with db.session() as session:
        with pytest.raises(Exception, match="failed authentication"):
            await config_store.get_value(session, vault, "b_secret")


async def test_put_encrypts_secrets_too(
    client: httpx.AsyncClient, db: Database, vault: Vault, admin_headers: dict[str, str]
) -> None:
    await client.put("/v1/config", json={"cloud.api_secret": SECRET}, headers=admin_headers)
    stored_value, encrypted = (await raw_rows(db))["cloud.api_secret"]
    assert encrypted is True
    assert SECRET not in stored_value
    async with db.session() as session:
        assert await config_store.get_value(session, vault, "cloud.api_secret") == SECRET


async def test_secret_values_never_reach_the_audit_log(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    body = {"oauth2.client_secret": SECRET, "server.name": "k"}
    await client.patch("/v1/config", json=body, headers=admin_headers)
    await client.put("/v1/config", json=body, headers=admin_headers)

    async with db.session() as session:
        dump = await session.execute(text("SELECT * FROM audit_logs"))
        assert SECRET not in repr(dump.all())
    secret_entries = await audit_entries(db, resource_id="oauth2.client_secret")
    assert len(secret_entries) == 2
    for entry in secret_entries:
        assert entry.request_body == '{"oauth2.client_secret":"********"}'
        assert entry.request_parameters == {"key": "oauth2.client_secret", "value": "********"}
    plain = (await audit_entries(db, resource_id="server.name"))[0]
    assert plain.request_body == '{"server.name":"k"}'


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"bad key!": "v", "ok.key": "v"}, {"bad key!": "Key isn't in the right format"}),
        ({"": "v"}, {"": "Key can't be blank"}),
        ({"k" * 256: "v"}, {"k" * 256: "Key is too long"}),
        ({"nested": {"a": 1}}, {"nested": "Value must be a string, number, boolean or null"}),
        ({"listed": [1]}, {"listed": "Value must be a string, number, boolean or null"}),
        ([{"a": "b"}], "Body must be a JSON object"),
        ("text", "Body must be a JSON object"),
        (42, "Body must be a JSON object"),
    ],
)
@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_invalid_bodies_are_rejected_and_nothing_is_written(
    client: httpx.AsyncClient,
    db: Database,
    vault: Vault,
    admin_headers: dict[str, str],
    method: str,
    body: Any,
    error: Any,
) -> None:
    await seed(db, vault, {"keep.me": "v"})
    before = await raw_rows(db)

    response = await client.request(method, "/v1/config", json=body, headers=admin_headers)

    assert response.status_code == 422
    assert response.json() == {"error": error}
    assert await raw_rows(db) == before
    assert await audit_entries(db) == []


async def test_longest_allowed_key_is_accepted(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    key = "k" * 255
    response = await client.patch("/v1/config", json={key: "v"}, headers=admin_headers)
    assert response.status_code == 201
    assert set(await raw_rows(db)) == {key}


async def test_invalid_json_is_a_400(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    response = await client.patch(
        "/v1/config",
        content=b"{not json",
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid json"}
    assert await raw_rows(db) == {}


async def test_changes_are_audited_with_identity_ip_and_user_agent(
    client: httpx.AsyncClient, db: Database, make_user: Any
) -> None:
    root = await make_user("root@example.com", roles=("master_admin",))
    headers = {**root.headers, "User-Agent": "kontena-cli/1.5.2"}

    await client.patch("/v1/config", json={"server.name": "k"}, headers=headers)
    await client.delete("/v1/config/server.name", headers=headers)
    await client.delete("/v1/config", headers=headers)

    entries = await audit_entries(db)
    assert [(e.event_name, e.resource_id) for e in entries] == [
        ("modify", "server.name"),
        ("modify", "server.name"),
        ("destroy_all", None),
    ]
    for entry in entries:
        assert entry.resource_type == "config"
        assert entry.user_id == root.user.id
        assert entry.user_email == "root@example.com"
        assert entry.source_ip == "127.0.0.1"
        assert entry.user_agent == "kontena-cli/1.5.2"
        assert entry.grid_id is None
    assert entries[1].request_body == '{"server.name":null}'
    await assert_no_unaudited_requests(db)


async def test_empty_patch_is_audited_once(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    response = await client.patch("/v1/config", json={}, headers=admin_headers)
    assert response.status_code == 201
    entry = await assert_audited(db, "config", "modify")
    assert entry.resource_id is None


async def test_put_audits_the_wipe_and_each_key(
    client: httpx.AsyncClient, db: Database, admin_headers: dict[str, str]
) -> None:
    await client.put("/v1/config", json={"a.one": "1", "b.two": 2}, headers=admin_headers)
    await assert_audited(db, "config", "destroy_all")
    await assert_audited(db, "config", "modify", resource_id="a.one")
    await assert_audited(db, "config", "modify", resource_id="b.two")


async def external_ids(db: Database) -> dict[str, str | None]:
    """Every user's link to the OAuth2 provider."""
    async with db.session() as session:
        rows = await session.execute(select(User.email, User.external_id))
        return {email: external_id for email, external_id in rows}


async def link_users(db: Database) -> None:
    """Give every user an external id, as a finished OAuth2 login would."""
    async with db.session() as session:
        await session.execute(text("UPDATE users SET external_id = 'ext-' || id"))
        await session.commit()


@pytest.mark.parametrize(
    ("method", "path", "body", "cleared"),
    [
        ("PATCH", "/v1/config", {"server.name": "k"}, False),
        ("PATCH", "/v1/config", {"oauth2.client_id": "new"}, True),
        ("PATCH", "/v1/config", {"server.root_url": "https://m"}, True),
        ("DELETE", "/v1/config/server.name", None, False),
        ("DELETE", "/v1/config/oauth2.client_id", None, True),
        ("PUT", "/v1/config", {"server.name": "k"}, True),
        ("DELETE", "/v1/config", None, True),
    ],
)
async def test_auth_settings_changes_unlink_users(
    client: httpx.AsyncClient,
    db: Database,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    cleared: bool,
) -> None:
    await link_users(db)
    response = await client.request(method, path, json=body, headers=admin_headers)
    assert response.status_code == 201
    ids = await external_ids(db)
    assert ids
    if cleared:
        assert set(ids.values()) == {None}
    else:
        assert None not in set(ids.values())


async def test_seed_defaults_never_overwrites(db: Database, vault: Vault) -> None:
    await seed(db, vault, {"server.name": "mine"})
    async with db.session() as session:
        await config_store.seed_defaults(
            session,
            vault,
            [("server.name", "default"), ("oauth2.client_secret", SECRET), ("x.none", None)],
        )
        await session.commit()
    async with db.session() as session:
        assert await config_store.get_value(session, vault, "server.name") == "mine"
        assert await config_store.get_value(session, vault, "oauth2.client_secret") == SECRET
        assert await config_store.get_value(session, vault, "x.none") is None
        count = await session.scalar(select(AuditLog.id).limit(1))
        assert count is None
