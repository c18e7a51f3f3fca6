"""External registries API (§2.8): derived names, Kontena's validation, no password anywhere."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from models import Registry
from models.db import Database
from tests.fixtures.audit import assert_audited, audit_entries
from tests.fixtures.raw_rows import assert_nowhere_in_database

PASSWORD = "xyz123-registry-password"
CREATE = {
    "url": "https://registry.domain.com/",
    "username": "a_bot",
    "email": "a_bot@domain.com",
    "password": PASSWORD,
}


@pytest.fixture
async def grid(client: httpx.AsyncClient, admin: Any) -> str:
    """Grid ``main`` made through the API; the admin is a member."""
    response = await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)
    assert response.status_code == 201
    return "main"


async def _names(db: Database) -> list[str]:
    async with db.session() as session:
        return sorted((await session.execute(select(Registry.name))).scalars())


async def test_create_list_get_and_delete(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    h = admin.headers
    created = await client.post("/v1/grids/main/external_registries", json=CREATE, headers=h)
    expected = {
        "id": "main/registry.domain.com",
        "name": "registry.domain.com",
        "url": "https://registry.domain.com/",
        "username": "a_bot",
        "email": "a_bot@domain.com",
    }
    assert (created.status_code, created.json()) == (201, expected)
    local = await client.post(
        "/v1/grids/main/external_registries",
        json={"url": "http://127.0.0.1:5000", "username": "u", "password": "p"},
        headers=h,
    )
    assert (local.status_code, local.json()["id"], local.json()["email"]) == (
        201,
        "main/127.0.0.1:5000",
        None,
    )
    listed = await client.get("/v1/grids/main/external_registries", headers=h)
    assert listed.status_code == 200
    assert [r["name"] for r in listed.json()["external_registries"]] == [
        "127.0.0.1:5000",
        "registry.domain.com",
    ]
    shown = await client.get("/v1/external_registries/main/registry.domain.com", headers=h)
    assert (shown.status_code, shown.json()) == (200, expected)
    assert PASSWORD not in listed.text + shown.text + created.text

    entry = await assert_audited(db, "registry", "create", resource_name="registry.domain.com")
    assert entry.request_body is not None and PASSWORD not in entry.request_body
    assert "[FILTERED]" in entry.request_body

    gone = await client.delete("/v1/external_registries/main/127.0.0.1:5000", headers=h)
    assert (gone.status_code, gone.json()) == (200, {})
    # The spec's grid-scoped delete path does the same.
    also = await client.delete("/v1/grids/main/external_registries/registry.domain.com", headers=h)
    assert (also.status_code, also.json()) == (200, {})
    assert await _names(db) == []
    assert len(await audit_entries(db, resource_type="registry", event_name="delete")) == 2


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"username": "u", "password": "p"}, {"url": "Url is required"}),
        ({"url": "", "username": "u", "password": "p"}, {"url": "Url can't be blank"}),
        (
            {"url": "ftp://reg.example.com", "username": "u", "password": "p"},
            {"url": "Url isn't in the right format"},
        ),
        (
            {"url": "reg.example.com", "username": "u", "password": "p"},
            {"url": "Url isn't in the right format"},
        ),
        (
            {"url": "https://reg example.com", "username": "u", "password": "p"},
            {"url": "Url isn't in the right format"},
        ),
        (
            {"url": "https://reg.example.com:port", "username": "u", "password": "p"},
            {"url": "Url isn't in the right format"},
        ),
        ({"url": "https://r.example.com", "password": "p"}, {"username": "Username is required"}),
        (
            {"url": "https://r.example.com", "username": "", "password": "p"},
            {"username": "Username can't be blank"},
        ),
        ({"url": "https://r.example.com", "username": "u"}, {"password": "Password is required"}),
        (
            {"url": "https://r.example.com", "username": "u", "password": ""},
            {"password": "Password can't be blank"},
        ),
        (
            {"url": "https://r.example.com", "username": "u", "password": 5},
            {"password": "Password isn't a string"},
        ),
        (
            {},
            {
                "url": "Url is required",
                "username": "Username is required",
                "password": "Password is required",
            },
        ),
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
    response = await client.post(
        "/v1/grids/main/external_registries", json=body, headers=admin.headers
    )
    assert (response.status_code, response.json()) == (422, {"error": error})
    assert await _names(db) == []


async def test_a_second_registry_for_the_same_host_is_refused(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    h = admin.headers
    first = await client.post("/v1/grids/main/external_registries", json=CREATE, headers=h)
    assert first.status_code == 201
    # Another URL on the same host and default port derives the same name.
    again = await client.post(
        "/v1/grids/main/external_registries",
        json={**CREATE, "url": "https://registry.domain.com:443/v2/"},
        headers=h,
    )
    assert (again.status_code, again.json()) == (422, {"error": {"name": "is already taken"}})
    other_port = await client.post(
        "/v1/grids/main/external_registries",
        json={**CREATE, "url": "https://registry.domain.com:5000"},
        headers=h,
    )
    assert other_port.status_code == 201
    assert await _names(db) == ["registry.domain.com", "registry.domain.com:5000"]


async def test_passwords_are_stored_encrypted(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    await client.post("/v1/grids/main/external_registries", json=CREATE, headers=admin.headers)
    async with db.session() as session:
        [row] = (await session.execute(select(Registry))).scalars().all()
    assert row.password_encrypted.startswith("kv1:")
    await assert_nowhere_in_database(db, PASSWORD)
