"""The Grids API: round-trips of every attribute, Kontena's validation rules and who may do what."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core.tokens import digest
from models import AuditLog, EventLog, Grid, grid_users
from models.db import Database

GRID_KEYS = {
    "id",
    "name",
    "token",
    "initial_size",
    "stats",
    "default_affinity",
    "trusted_subnets",
    "node_count",
    "service_count",
    "container_count",
    "user_count",
    "subnet",
    "supernet",
}

FULL: dict[str, Any] = {
    "name": "full-grid",
    "initial_size": 3,
    "token": "fixed-grid-token-value",
    "subnet": "10.90.0.0/16",
    "supernet": "10.88.0.0/13",
    "default_affinity": ["label!=reserved"],
    "trusted_subnets": ["192.168.66.0/24", "10.240.0.0/16"],
    "stats": {"statsd": {"server": "127.0.0.1", "port": 8125}},
    "logs": {"forwarder": "fluentd", "opts": {"fluentd-address": "127.0.0.1:24224"}},
}


async def count(db: Database, model: Any) -> int:
    """Rows in a table."""
    async with db.session() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def create(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> Any:
    """Create a grid and return its JSON."""
    response = await client.post("/v1/grids", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_create_get_update_delete_round_trip_every_attribute(
    client: httpx.AsyncClient, admin: Any, db: Database
) -> None:
    created = await create(client, admin.headers, **FULL)
    expected = {
        "id": "full-grid",
        "name": "full-grid",
        "token": "fixed-grid-token-value",
        "initial_size": 3,
        "stats": {"statsd": {"server": "127.0.0.1", "port": 8125}},
        "default_affinity": ["label!=reserved"],
        "trusted_subnets": ["192.168.66.0/24", "10.240.0.0/16"],
        "node_count": 0,
        "service_count": 0,
        "container_count": 0,
        "user_count": 1,
        "subnet": "10.90.0.0/16",
        "supernet": "10.88.0.0/13",
        "logs": {"forwarder": "fluentd", "opts": {"fluentd-address": "127.0.0.1:24224"}},
    }
    assert created == expected
    got = await client.get("/v1/grids/full-grid", headers=admin.headers)
    assert got.status_code == 200
    assert got.json() == expected

    update = {
        "default_affinity": ["label==fast"],
        "trusted_subnets": ["172.16.0.0/12"],
        "stats": {"statsd": {"server": "stats.local", "port": "9125"}},
        "logs": {"forwarder": "fluentd", "opts": {"fluentd-address": "10.0.0.1"}},
        # Not changeable, or unknown: ignored.
        "name": "renamed",
        "subnet": "10.1.0.0/16",
        "initial_size": 5,
        "token": "other",
        "bogus": 1,
    }
    updated = await client.put("/v1/grids/full-grid", json=update, headers=admin.headers)
    assert updated.status_code == 200, updated.text
    assert updated.json() == {
        **expected,
        "default_affinity": ["label==fast"],
        "trusted_subnets": ["172.16.0.0/12"],
        "stats": {"statsd": {"server": "stats.local", "port": 9125}},
        "logs": {"forwarder": "fluentd", "opts": {"fluentd-address": "10.0.0.1"}},
    }
    assert (await client.get("/v1/grids/full-grid", headers=admin.headers)).json() == (
        updated.json()
    )

    # Omitted fields stay; `statsd: null` and `forwarder: none` switch features off.
    off = await client.put(
        "/v1/grids/full-grid",
        json={"stats": {"statsd": None}, "logs": {"forwarder": "none"}},
        headers=admin.headers,
    )
    assert off.status_code == 200
    body = off.json()
    assert set(body) == GRID_KEYS
    assert body["stats"] == {"statsd": None}
    assert body["trusted_subnets"] == ["172.16.0.0/12"]

    deleted = await client.delete("/v1/grids/full-grid", headers=admin.headers)
    assert deleted.status_code == 200
    assert deleted.json() == {}
    assert (await client.get("/v1/grids/full-grid", headers=admin.headers)).status_code == 404
    assert await count(db, Grid) == 0
    assert await count(db, grid_users) == 0


async def test_defaults_and_generated_token(client: httpx.AsyncClient, admin: Any) -> None:
    grid = await create(client, admin.headers, name="plain")
    assert set(grid) == GRID_KEYS  # no `logs` key when log shipping is off
    assert grid["initial_size"] == 1
    assert grid["subnet"] == "10.81.0.0/16"
    assert grid["supernet"] == "10.80.0.0/12"
    assert grid["default_affinity"] == []
    assert grid["trusted_subnets"] == []
    assert grid["stats"] == {"statsd": None}
    assert len(grid["token"]) == 88  # base64 of 64 random bytes
    other = await create(client, admin.headers, name="plain2")
    assert other["token"] != grid["token"]


@pytest.mark.parametrize("name", [None, "", "   "])
async def test_blank_name_gets_random_adjective_noun(
    client: httpx.AsyncClient, admin: Any, name: str | None
) -> None:
    body = {} if name is None else {"name": name}
    grid = await create(client, admin.headers, **body)
    adjective, _, noun = grid["name"].partition("-")
    assert adjective and noun and grid["id"] == grid["name"]


async def test_token_is_stored_hashed_and_encrypted(
    client: httpx.AsyncClient, admin: Any, db: Database
) -> None:
    grid = await create(client, admin.headers, name="secret", token="plain-join-token-123")
    async with db.session() as session:
        row = (await session.execute(select(Grid).where(Grid.name == "secret"))).scalar_one()
        raw = {c.name: getattr(row, c.key) for c in Grid.__table__.columns}
    assert row.token_hash == digest("plain-join-token-123")
    assert not any("plain-join-token-123" in str(value) for value in raw.values())
    assert grid["token"] == "plain-join-token-123"
    audit = await count(db, AuditLog)
    assert audit == 1
    async with db.session() as session:
        entry = (await session.execute(select(AuditLog))).scalar_one()
    assert "plain-join-token-123" not in (entry.request_body or "")
    assert (entry.resource_type, entry.event_name, entry.resource_name) == (
        "grid",
        "create",
        "secret",
    )


INVALID: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"name": "ab"}, {"name": "Name is too short"}),
    ({"name": "bad name!"}, {"name": "Name isn't in the right format"}),
    ({"name": "grüße"}, {"name": "Name isn't in the right format"}),
    ({"name": "x" * 65}, {"name": "Name is too long"}),
    ({"name": 5}, {"name": "Name isn't a string"}),
    ({"initial_size": 0}, {"initial_size": "Initial size is too small"}),
    ({"initial_size": 8}, {"initial_size": "Initial size is too big"}),
    ({"initial_size": "three"}, {"initial_size": "Initial size isn't an integer"}),
    ({"subnet": "10.0.0.300/16"}, {"subnet": "Invalid subnet 10.0.0.300/16"}),
    ({"supernet": "nope"}, {"supernet": "Invalid supernet nope"}),
    ({"token": "t" * 257}, {"token": "Token is too long"}),
    ({"default_affinity": "label==x"}, {"default_affinity": "Default affinity isn't an array"}),
    ({"trusted_subnets": ["10.0.0.0/8", "bad"]}, {"trusted_subnets": "Invalid trusted_subnet bad"}),
    ({"stats": {"statsd": {"port": 1}}}, {"stats": {"statsd": {"server": "Server is required"}}}),
    (
        {"stats": {"statsd": {"server": "a"}}},
        {"stats": {"statsd": {"port": "Port is required"}}},
    ),
    (
        {"stats": {"statsd": {"server": "a", "port": "x1"}}},
        {"stats": {"statsd": {"port": "Port isn't an integer"}}},
    ),
    ({"logs": {"opts": {}}}, {"logs": {"forwarder": "Forwarder is required"}}),
    ({"logs": {"forwarder": "syslog"}}, {"logs": {"forwarder": "Forwarder isn't an option"}}),
    ({"logs": {"forwarder": "fluentd"}}, {"logs": "fluentd-address option must be given"}),
]


@pytest.mark.parametrize(("body", "error"), INVALID)
async def test_create_validation_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient, admin: Any, db: Database, body: dict[str, Any], error: Any
) -> None:
    response = await client.post("/v1/grids", json={"name": "valid", **body}, headers=admin.headers)
    assert response.status_code == 422
    assert response.json() == {"error": error}
    for model in (Grid, grid_users, AuditLog, EventLog):
        assert await count(db, model) == 0


@pytest.mark.parametrize(("body", "error"), [(b, e) for b, e in INVALID if "name" not in b])
async def test_update_validation_of_common_fields(
    client: httpx.AsyncClient, admin: Any, db: Database, body: dict[str, Any], error: Any
) -> None:
    await create(client, admin.headers, name="valid")
    if not set(body) & {"default_affinity", "trusted_subnets", "stats", "logs"}:
        return  # create-only fields are ignored on update
    response = await client.put("/v1/grids/valid", json=body, headers=admin.headers)
    assert response.status_code == 422
    assert response.json() == {"error": error}
    assert await count(db, AuditLog) == 1  # only the create


async def test_duplicate_name_and_token(
    client: httpx.AsyncClient, admin: Any, db: Database
) -> None:
    await create(client, admin.headers, name="taken", token="a-token-value")
    again = await client.post("/v1/grids", json={"name": "taken"}, headers=admin.headers)
    assert again.status_code == 422
    assert again.json() == {"error": {"grid": "Grid with name taken already exists"}}
    same_token = await client.post(
        "/v1/grids", json={"name": "other", "token": "a-token-value"}, headers=admin.headers
    )
    assert same_token.status_code == 422
    assert same_token.json() == {"error": {"token": "Token is already in use"}}
    assert await count(db, Grid) == 1


async def test_bad_json_is_400(client: httpx.AsyncClient, admin: Any) -> None:
    response = await client.post("/v1/grids", content=b"{nope", headers=admin.headers)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid json"}


async def test_mutations_write_audit_and_event_entries(
    client: httpx.AsyncClient, admin: Any, db: Database
) -> None:
    await create(client, admin.headers, name="audited")
    await client.put("/v1/grids/audited", json={"default_affinity": []}, headers=admin.headers)
    async with db.session() as session:
        events = (await session.execute(select(EventLog.type).order_by(EventLog.id))).all()
    assert [e.type for e in events] == ["grid:create", "grid:update"]
    await client.delete("/v1/grids/audited", headers=admin.headers)
    async with db.session() as session:
        audits = (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
    assert [(a.event_name, a.resource_name, a.grid_name) for a in audits] == [
        ("create", "audited", "audited"),
        ("update", "audited", "audited"),
        ("delete", "audited", "audited"),
    ]
    assert {a.resource_type for a in audits} == {"grid"}


async def test_list_is_scoped_and_counts_users(
    client: httpx.AsyncClient, admin: Any, make_user: Any
) -> None:
    await create(client, admin.headers, name="alpha")
    await create(client, admin.headers, name="beta")
    member = await make_user("member@example.com", grids=("beta",))
    await make_user("second@example.com", grids=("beta",))
    everything = await client.get("/v1/grids", headers=admin.headers)
    assert [g["name"] for g in everything.json()["grids"]] == ["alpha", "beta"]
    counts = {g["name"]: g["user_count"] for g in everything.json()["grids"]}
    assert counts == {"alpha": 1, "beta": 3}
    own = await client.get("/v1/grids", headers=member.headers)
    assert own.status_code == 200
    assert [g["name"] for g in own.json()["grids"]] == ["beta"]
    assert set(own.json()["grids"][0]) == GRID_KEYS


async def test_listing_many_grids_takes_a_fixed_number_of_queries(
    client: httpx.AsyncClient, admin: Any, db: Database, vault: Any
) -> None:
    from sqlalchemy import event

    from core.grids import create_default_grid

    async with db.session() as session:
        for i in range(100):
            await create_default_grid(session, vault, admin.user, f"grid-{i:03d}")
        await session.commit()
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        response = await client.get("/v1/grids", headers=admin.headers)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert response.status_code == 200
    grids = response.json()["grids"]
    assert len(grids) == 100
    assert {g["user_count"] for g in grids} == {1}
    counting = [s for s in statements if "grid_users" in s and "count" in s.lower()]
    assert len(counting) == 1
    assert len(statements) <= 6, statements  # token, memberships, grids, counts


async def test_delete_refused_while_something_blocks_it(
    client: httpx.AsyncClient, admin: Any, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.grids

    await create(client, admin.headers, name="busy")

    async def blockers(*_: Any) -> list[str]:
        return ["Grid has nodes"]

    monkeypatch.setattr(core.grids, "deletion_blockers", blockers)
    response = await client.delete("/v1/grids/busy", headers=admin.headers)
    assert response.status_code == 422
    assert response.json() == {"error": {"grid": "Grid has nodes"}}
    assert await count(db, Grid) == 1
    assert await count(db, AuditLog) == 1  # the create only: the refused delete rolled back
