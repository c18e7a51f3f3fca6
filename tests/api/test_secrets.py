"""Secrets API (§2.7): shapes, Kontena's rules, upsert, in-use protection, no value leaks."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import secrets
from core.secrets import ServiceRef
from models import AuditLog, Grid, GridSecret
from models.db import Database
from tests.fixtures.audit import assert_audited, assert_no_unaudited_requests, audit_entries
from tests.fixtures.raw_rows import assert_nowhere_in_database

VALUE = "T0Ps3crT-plaintext"
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
async def grid(client: httpx.AsyncClient, admin: Any) -> str:
    """Grid ``main`` made through the API; the admin is a member."""
    response = await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)
    assert response.status_code == 201
    return "main"


async def _rows(db: Database) -> list[GridSecret]:
    async with db.session() as session:
        return list((await session.execute(select(GridSecret))).scalars())


async def test_create_then_list_and_read(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    created = await client.post(
        "/v1/grids/main/secrets", json={"name": "SECRET_PWD", "value": VALUE}, headers=admin.headers
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "name", "created_at", "updated_at", "value", "services"}
    assert (body["id"], body["name"], body["value"], body["services"]) == (
        "main/SECRET_PWD",
        "SECRET_PWD",
        VALUE,
        [],
    )
    assert re.fullmatch(TIME, body["created_at"]) and re.fullmatch(TIME, body["updated_at"])
    await client.post(
        "/v1/grids/main/secrets", json={"name": "A-1", "value": "other"}, headers=admin.headers
    )
    listed = await client.get("/v1/grids/main/secrets", headers=admin.headers)
    assert listed.status_code == 200
    items = listed.json()["secrets"]
    assert [item["id"] for item in items] == ["main/A-1", "main/SECRET_PWD"]
    assert all(
        set(item) == {"id", "name", "created_at", "updated_at", "services"} for item in items
    )
    assert VALUE not in listed.text
    read = await client.get("/v1/secrets/main/SECRET_PWD", headers=admin.headers)
    assert read.status_code == 200
    assert read.json() == body
    entry = await assert_audited(db, "grid_secret", "create", resource_name="SECRET_PWD")
    assert (entry.grid_name, entry.request_body) == ("main", None)


async def test_reading_a_value_is_audited_without_the_value(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    await client.post(
        "/v1/grids/main/secrets", json={"name": "DB", "value": VALUE}, headers=admin.headers
    )
    for _ in range(2):
        assert (await client.get("/v1/secrets/main/DB", headers=admin.headers)).status_code == 200
    shows = await audit_entries(db, resource_type="grid_secret", event_name="show")
    assert len(shows) == 2
    assert (shows[0].resource_name, shows[0].user_email, shows[0].grid_name) == (
        "DB",
        "admin",
        "main",
    )
    await assert_no_unaudited_requests(db)
    # The value is nowhere: not in audit rows, event logs, nor the secret's own row.
    await assert_nowhere_in_database(db, VALUE)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"value": "v"}, {"name": "Name is required"}),
        ({"name": "", "value": "v"}, {"name": "Name can't be blank"}),
        ({"name": "-LEADING", "value": "v"}, {"name": "Name isn't in the right format"}),
        ({"name": "WITH SPACE", "value": "v"}, {"name": "Name isn't in the right format"}),
        ({"name": "ÄÖ", "value": "v"}, {"name": "Name isn't in the right format"}),
        ({"name": "a/b", "value": "v"}, {"name": "Name isn't in the right format"}),
        ({"name": "N" * 256, "value": "v"}, {"name": "Name is too long"}),
        ({"name": "OK"}, {"value": "Value is required"}),
        ({"name": "OK", "value": ""}, {"value": "Value can't be blank"}),
        ({"name": "OK", "value": None}, {"value": "Value is required"}),
        ({"name": "OK", "value": 12}, {"value": "Value isn't a string"}),
        ({"name": 12, "value": "v"}, {"name": "Name isn't a string"}),
        ({}, {"name": "Name is required", "value": "Value is required"}),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient,
    admin: Any,
    grid: str,
    db: Database,
    body: dict[str, Any],
    error: dict[str, str],
) -> None:
    response = await client.post("/v1/grids/main/secrets", json=body, headers=admin.headers)
    assert (response.status_code, response.json()) == (422, {"error": error})
    assert await _rows(db) == []


async def test_create_rejects_bad_json_and_a_taken_name(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    bad = await client.post(
        "/v1/grids/main/secrets",
        content=b"{not json",
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert (bad.status_code, bad.json()) == (400, {"error": "Invalid json"})
    not_object = await client.post("/v1/grids/main/secrets", json=[1], headers=admin.headers)
    assert not_object.status_code == 422
    first = await client.post(
        "/v1/grids/main/secrets", json={"name": "X", "value": "1"}, headers=admin.headers
    )
    assert first.status_code == 201
    again = await client.post(
        "/v1/grids/main/secrets", json={"name": "X", "value": VALUE}, headers=admin.headers
    )
    assert (again.status_code, again.json()) == (422, {"error": {"name": "is already taken"}})
    assert len(await _rows(db)) == 1
    # The same name in another grid is another secret.
    await client.post("/v1/grids", json={"name": "other"}, headers=admin.headers)
    elsewhere = await client.post(
        "/v1/grids/other/secrets", json={"name": "X", "value": "2"}, headers=admin.headers
    )
    assert elsewhere.status_code == 201
    assert (await client.get("/v1/secrets/main/X", headers=admin.headers)).json()["value"] == "1"


async def test_update_upsert_and_the_legacy_path(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    h = admin.headers
    await client.post("/v1/grids/main/secrets", json={"name": "S", "value": "one"}, headers=h)
    [before] = await _rows(db)
    same = await client.put("/v1/secrets/main/S", json={"value": "one"}, headers=h)
    assert (same.status_code, same.json()["value"]) == (200, "one")
    [unchanged] = await _rows(db)
    assert (unchanged.value_encrypted, unchanged.updated_at) == (
        before.value_encrypted,
        before.updated_at,
    )
    changed = await client.put("/v1/secrets/main/S", json={"value": "two"}, headers=h)
    assert (changed.status_code, changed.json()["value"]) == (200, "two")
    legacy = await client.put("/v1/grids/main/secrets/S", json={"value": "three"}, headers=h)
    assert (legacy.status_code, legacy.json()["value"]) == (200, "three")
    blank = await client.put("/v1/secrets/main/S", json={"value": ""}, headers=h)
    assert (blank.status_code, blank.json()) == (422, {"error": {"value": "Value can't be blank"}})

    missing = await client.put("/v1/secrets/main/NEW", json={"value": "v"}, headers=h)
    assert (missing.status_code, missing.json()) == (404, {"error": "Not found"})
    no_upsert_here = await client.put(
        "/v1/grids/main/secrets/NEW", json={"name": "NEW", "value": "v", "upsert": True}, headers=h
    )
    assert no_upsert_here.status_code == 404
    # Upsert creates with the name from the body, as the original did.
    upserted = await client.put(
        "/v1/secrets/main/NEW", json={"name": "NEW", "value": "v", "upsert": True}, headers=h
    )
    assert (upserted.status_code, upserted.json()["id"]) == (201, "main/NEW")
    nameless = await client.put(
        "/v1/secrets/main/OTHER", json={"value": "v", "upsert": True}, headers=h
    )
    assert (nameless.status_code, nameless.json()) == (
        422,
        {"error": {"name": "Name is required"}},
    )
    existing = await client.put(
        "/v1/secrets/main/NEW", json={"name": "NEW", "value": "w", "upsert": True}, headers=h
    )
    assert (existing.status_code, existing.json()["value"]) == (200, "w")
    assert sorted(row.name for row in await _rows(db)) == ["NEW", "S"]
    updates = await audit_entries(db, resource_type="grid_secret", event_name="update")
    assert len(updates) == 4 and all(entry.request_body is None for entry in updates)
    await assert_no_unaudited_requests(db)


@pytest.fixture
def consumers() -> Iterator[dict[str, list[ServiceRef]]]:
    """Stand in for the services issue: which services use which secret."""
    used: dict[str, list[ServiceRef]] = {}

    async def finder(_session: AsyncSession, _grid: Grid) -> Mapping[str, Sequence[ServiceRef]]:
        return used

    secrets.CONSUMER_FINDERS.append(finder)
    yield used
    secrets.CONSUMER_FINDERS.remove(finder)


async def test_delete_and_a_secret_in_use(
    client: httpx.AsyncClient,
    admin: Any,
    grid: str,
    db: Database,
    consumers: dict[str, list[ServiceRef]],
) -> None:
    h = admin.headers
    for name in ("USED", "FREE"):
        await client.post("/v1/grids/main/secrets", json={"name": name, "value": "v"}, headers=h)
    consumers["USED"] = [ServiceRef(id="main/null/app", name="app")]
    listed = (await client.get("/v1/grids/main/secrets", headers=h)).json()["secrets"]
    assert [item["services"] for item in listed] == [[], [{"id": "main/null/app", "name": "app"}]]
    shown = await client.get("/v1/secrets/main/USED", headers=h)
    assert shown.json()["services"] == [{"id": "main/null/app", "name": "app"}]

    refused = await client.delete("/v1/secrets/main/USED", headers=h)
    assert (refused.status_code, refused.json()) == (
        422,
        {"error": {"secret": "Secret USED still in use in services: main/null/app"}},
    )
    deleted = await client.delete("/v1/secrets/main/FREE", headers=h)
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert [row.name for row in await _rows(db)] == ["USED"]
    entry = await assert_audited(db, "grid_secret", "delete")
    assert entry.resource_name == "FREE"


async def test_change_hooks_run_on_create_and_on_a_new_value_only(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    changed: list[tuple[str, str]] = []

    async def hook(_session: AsyncSession, grid_row: Grid, name: str) -> None:
        changed.append((grid_row.name, name))

    secrets.CHANGE_HOOKS.append(hook)
    try:
        h = admin.headers
        await client.post("/v1/grids/main/secrets", json={"name": "S", "value": "a"}, headers=h)
        await client.put("/v1/secrets/main/S", json={"value": "a"}, headers=h)
        await client.put("/v1/secrets/main/S", json={"value": "b"}, headers=h)
    finally:
        secrets.CHANGE_HOOKS.remove(hook)
    assert changed == [("main", "S"), ("main", "S")]


async def test_values_are_stored_encrypted_and_bound_to_their_secret(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    await client.post(
        "/v1/grids/main/secrets", json={"name": "DB", "value": VALUE}, headers=admin.headers
    )
    [row] = await _rows(db)
    assert row.value_encrypted.startswith("kv1:") and VALUE not in row.value_encrypted
    await assert_nowhere_in_database(db, VALUE)
    async with db.session() as session:
        audit_bodies = (await session.execute(select(AuditLog.request_body))).scalars().all()
    assert all(body is None or VALUE not in body for body in audit_bodies)
