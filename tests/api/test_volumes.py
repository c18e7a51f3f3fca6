"""Volumes API (§2.10): create rules with Kontena's words, show/list, in-use delete, access."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select

from models import Grid, Node, Service, Volume, VolumeInstance
from models.db import Database
from tests.fixtures.audit import assert_audited
from tests.fixtures.service_rows import create_service

VOLUME = {"name": "data", "scope": "instance", "driver": "local", "driver_opts": {"o": "bind"}}


@pytest.fixture
async def grid(client: httpx.AsyncClient, admin: Any) -> str:
    """Grid ``main`` made through the API; the admin is a member."""
    response = await client.post("/v1/grids", json={"name": "main"}, headers=admin.headers)
    assert response.status_code == 201
    return "main"


async def test_create_show_list_delete(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    h = admin.headers
    created = await client.post("/v1/volumes/main", json=VOLUME, headers=h)
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in ("id", "name", "scope", "driver", "driver_opts")} == {
        "id": "main/data",
        "name": "data",
        "scope": "instance",
        "driver": "local",
        "driver_opts": {"o": "bind"},
    }
    assert (body["instances"], body["services"]) == ([], [])
    assert body["created_at"].endswith("Z")
    await assert_audited(db, "volume", "create", resource_name="data")

    shown = await client.get("/v1/volumes/main/data", headers=h)
    assert (shown.status_code, shown.json()) == (200, body)
    second = await client.post(
        "/v1/volumes/main", json={"name": "logs", "scope": "grid", "driver": "local"}, headers=h
    )
    assert (second.status_code, second.json()["driver_opts"]) == (201, {})
    listed = await client.get("/v1/volumes/main", headers=h)
    assert [v["id"] for v in listed.json()["volumes"]] == ["main/data", "main/logs"]

    gone = await client.delete("/v1/volumes/main/data", headers=h)
    assert (gone.status_code, gone.json()) == (200, {})
    await assert_audited(db, "volume", "delete", resource_name="data")
    missing = await client.get("/v1/volumes/main/data", headers=h)
    assert (missing.status_code, missing.json()) == (404, {"error": "Volume data not found"})
    again = await client.delete("/v1/volumes/main/data", headers=h)
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("body", "tree"),
    [
        (
            {},
            {
                "name": "Name is required",
                "scope": "Scope is required",
                "driver": "Driver is required",
            },
        ),
        ({**VOLUME, "name": ""}, {"name": "Name can't be blank"}),
        ({**VOLUME, "name": "-data"}, {"name": "Name isn't in the right format"}),
        ({**VOLUME, "name": "da ta"}, {"name": "Name isn't in the right format"}),
        ({**VOLUME, "name": "dätä"}, {"name": "Name isn't in the right format"}),
        ({**VOLUME, "name": 5}, {"name": "Name isn't a string"}),
        ({**VOLUME, "scope": "node"}, {"scope": "Scope isn't an option"}),
        ({**VOLUME, "driver": "rexray:0.11"}, {"driver": "Driver version tag cannot be used"}),
        ({**VOLUME, "driver_opts": "x"}, {"driver_opts": "Driver opts isn't a hash"}),
        (
            {**VOLUME, "driver_opts": {"a": [1]}},
            {"driver_opts": {"a": "Driver opts[a] isn't a string"}},
        ),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database, body: Any, tree: Any
) -> None:
    response = await client.post("/v1/volumes/main", json=body, headers=admin.headers)
    assert (response.status_code, response.json()) == (422, {"error": tree})
    async with db.session() as session:
        assert (await session.execute(select(func.count(Volume.id)))).scalar_one() == 0


async def test_option_values_become_strings_and_names_are_unique_per_grid(
    client: httpx.AsyncClient, admin: Any, grid: str
) -> None:
    h = admin.headers
    body = {**VOLUME, "driver_opts": {"size": 10, "sync": True}}
    created = await client.post("/v1/volumes/main", json=body, headers=h)
    assert created.json()["driver_opts"] == {"size": "10", "sync": "true"}
    duplicate = await client.post("/v1/volumes/main", json=VOLUME, headers=h)
    assert (duplicate.status_code, duplicate.json()) == (
        422,
        {"error": {"name": "Volume with given name already exists"}},
    )
    await client.post("/v1/grids", json={"name": "other"}, headers=h)
    elsewhere = await client.post("/v1/volumes/other", json=VOLUME, headers=h)
    assert elsewhere.status_code == 201


async def test_in_use_volume_cannot_be_deleted(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    h = admin.headers
    await client.post("/v1/volumes/main", json=VOLUME, headers=h)
    await create_service(client, h, name="db", volumes=["data:/var/lib/data", "/tmp/x:/x"])
    await create_service(client, h, name="api", volumes=["data:/srv:ro"])
    await create_service(client, h, name="web", volumes=["other:/srv"])
    refused = await client.delete("/v1/volumes/main/data", headers=h)
    assert (refused.status_code, refused.json()) == (
        422,
        {"error": {"data": 'Volume still in use in services ["main/null/api", "main/null/db"]'}},
    )
    shown = await client.get("/v1/volumes/main/data", headers=h)
    assert shown.json()["services"] == [{"id": "main/null/api"}, {"id": "main/null/db"}]
    # A service being removed still mounts it until its removal job deleted the row.
    await client.delete("/v1/services/main/null/api", headers=h)
    still = await client.delete("/v1/volumes/main/data", headers=h)
    assert still.status_code == 422
    async with db.session() as session:
        await session.execute(delete(Service).where(Service.name.in_(("api", "db"))))
        await session.commit()
    assert (await client.delete("/v1/volumes/main/data", headers=h)).status_code == 200


async def test_volume_json_lists_its_node_instances(
    client: httpx.AsyncClient, admin: Any, grid: str, db: Database
) -> None:
    h = admin.headers
    await client.post("/v1/volumes/main", json=VOLUME, headers=h)
    async with db.session() as session:
        grid_row = (await session.scalars(select(Grid).where(Grid.name == "main"))).one()
        volume = (await session.scalars(select(Volume))).one()
        node = Node(grid_id=grid_row.id, name="node-1", node_id="N1", node_number=1)
        session.add(node)
        await session.flush()
        session.add(VolumeInstance(volume_id=volume.id, node_id=node.id, name="db.data-1"))
        await session.commit()
    shown = await client.get("/v1/volumes/main/data", headers=h)
    assert shown.json()["instances"] == [{"node": "node-1", "name": "db.data-1"}]
    # Deleting the volume drops its instances; the node (offline here) just is not told.
    assert (await client.delete("/v1/volumes/main/data", headers=h)).status_code == 200
    async with db.session() as session:
        assert (await session.execute(select(func.count(VolumeInstance.id)))).scalar_one() == 0


INVALID = {"error": "invalid_token", "error_description": "Invalid token"}
EXPIRED = {"error": "invalid_token", "error_description": "Token expired"}
DENIED = {"error": "Access denied"}
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
CASES: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("GET", "/v1/volumes/main", None, 200),
    ("POST", "/v1/volumes/main", {"name": "new", "scope": "grid", "driver": "local"}, 201),
    ("GET", "/v1/volumes/main/seeded", None, 200),
    ("DELETE", "/v1/volumes/main/seeded", None, 200),
]


async def _reset(db: Database) -> None:
    """Grid ``main`` holds exactly one volume ``seeded``."""
    async with db.session() as session:
        grid_row = (await session.scalars(select(Grid).where(Grid.name == "main"))).one()
        await session.execute(delete(Volume))
        session.add(Volume(grid_id=grid_row.id, name="seeded", scope="grid", driver="local"))
        await session.commit()


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    [pytest.param(*case, id=f"{case[0]} {case[1]}") for case in CASES],
)
async def test_access(
    client: httpx.AsyncClient,
    grid_callers: dict[str, dict[str, str]],
    db: Database,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    allowed: int,
) -> None:
    wrong = []
    for caller in CALLERS:
        await _reset(db)
        if caller in ("no token", "malformed", "revoked"):
            expected: tuple[int, Any] = (403, INVALID)
        elif caller == "expired":
            expected = (403, EXPIRED)
        elif caller in ("non-member", "foreign grid_admin"):
            expected = (403, DENIED)
        else:
            expected = (allowed, None)  # every member of the grid may use volumes
        response = await client.request(method, path, json=body, headers=grid_callers[caller])
        got = (response.status_code, response.json() if expected[1] is not None else None)
        if got != expected:
            wrong.append((caller, response.status_code, response.text))
        async with db.session() as session:
            count = (await session.execute(select(func.count(Volume.id)))).scalar_one()
        if expected[0] == 403 and count != 1:
            wrong.append((caller, "refused call changed the volumes", count))
    assert wrong == []


async def test_unknown_grid_is_named_in_the_404(
    client: httpx.AsyncClient, grid_callers: dict[str, dict[str, str]]
) -> None:
    for caller in ("member", "non-member", "master_admin"):
        response = await client.get("/v1/volumes/missing", headers=grid_callers[caller])
        assert (response.status_code, response.json()) == (
            404,
            {"error": "Grid missing not found"},
        )
